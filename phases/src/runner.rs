//! The phase runner (kubeadm: cmd/phases/workflow/runner.go): phases are data, typed by the
//! command's run data; selection (`phase <name>`, `--skip-phases`) is a pure function.

use std::collections::BTreeSet;
use std::fmt;

use tracing::info_span;

/// A phase body.
pub type RunFn<D> = Box<dyn Fn(&mut D) -> anyhow::Result<()>>;

/// One node of a command's phase tree (kubeadm: workflow.Phase).
pub struct Phase<D> {
    /// Its name; its path is its ancestors' names joined by `/` (`certs/apiserver`).
    pub name: &'static str,
    /// kubeadm's help line, verbatim.
    pub short: &'static str,
    /// What it does; `None` for a pure group (its children do the work).
    pub run: Option<RunFn<D>>,
    /// Runs only when this returns true.
    pub run_if: Option<fn(&D) -> bool>,
    /// The parent command's flags that `<command> phase <name>` accepts.
    pub inherit_flags: &'static [&'static str],
    /// Sub-phases, run in order after this phase's own `run`.
    pub children: Vec<Phase<D>>,
    /// Left out of help.
    pub hidden: bool,
}

impl<D> Phase<D> {
    /// A phase that does work.
    pub fn new(
        name: &'static str,
        short: &'static str,
        run: impl Fn(&mut D) -> anyhow::Result<()> + 'static,
    ) -> Self {
        Phase {
            name,
            short,
            run: Some(Box::new(run)),
            run_if: None,
            inherit_flags: &[],
            children: Vec::new(),
            hidden: false,
        }
    }

    /// A group of sub-phases.
    pub fn group(name: &'static str, short: &'static str, children: Vec<Phase<D>>) -> Self {
        Phase {
            name,
            short,
            run: None,
            run_if: None,
            inherit_flags: &[],
            children,
            hidden: false,
        }
    }

    /// Sets the flags `<command> phase <name>` accepts.
    pub fn flags(mut self, flags: &'static [&'static str]) -> Self {
        self.inherit_flags = flags;
        self
    }

    /// Leaves the phase out of help (kubeadm: Phase.Hidden).
    pub fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    /// Sets a run condition.
    pub fn when(mut self, run_if: fn(&D) -> bool) -> Self {
        self.run_if = Some(run_if);
        self
    }
}

/// A phase name that is not in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPhase {
    /// What the user wrote.
    pub name: String,
    /// Every valid path, for the message.
    pub valid: Vec<String>,
}

impl fmt::Display for UnknownPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid phase name: {}; valid phases are: {}",
            self.name,
            self.valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownPhase {}

/// Every phase path of a tree, in run order (pre-order).
pub fn paths<D>(tree: &[Phase<D>]) -> Vec<String> {
    fn walk<D>(prefix: &str, phases: &[Phase<D>], out: &mut Vec<String>) {
        for p in phases {
            let path = if prefix.is_empty() {
                p.name.to_string()
            } else {
                format!("{prefix}/{}", p.name)
            };
            out.push(path.clone());
            walk(&path, &p.children, out);
        }
    }
    let mut out = Vec::new();
    walk("", tree, &mut out);
    out
}

/// kubeadm lets `<group>/all` stand for the group (the `all` sub-command runs every sibling).
fn normalize(name: &str) -> String {
    let n = name.trim().to_lowercase();
    match n.strip_suffix("/all") {
        Some(group) => group.to_string(),
        None => n,
    }
}

/// Which phases run (kubeadm: computePhaseRunFlags): every phase, or only those in `only` and
/// their sub-phases; then the ones in `skip` and their sub-phases are removed (skip beats
/// filter). Returns the paths to run, in order.
///
/// # Errors
/// A name in `only` or `skip` that is not a phase path.
pub fn plan<D>(
    tree: &[Phase<D>],
    only: &[String],
    skip: &[String],
) -> Result<Vec<String>, UnknownPhase> {
    let all = paths(tree);
    let check = |name: &String| -> Result<String, UnknownPhase> {
        let n = normalize(name);
        if all.contains(&n) {
            Ok(n)
        } else {
            Err(UnknownPhase {
                name: name.clone(),
                valid: all.clone(),
            })
        }
    };
    let covers = |root: &str, p: &str| p == root || p.starts_with(&format!("{root}/"));
    let only: Vec<String> = only.iter().map(check).collect::<Result<_, _>>()?;
    let skip: Vec<String> = skip.iter().map(check).collect::<Result<_, _>>()?;
    let mut selected: BTreeSet<&str> = if only.is_empty() {
        all.iter().map(String::as_str).collect()
    } else {
        all.iter()
            .filter(|p| only.iter().any(|o| covers(o, p)))
            .map(String::as_str)
            .collect()
    };
    selected.retain(|p| !skip.iter().any(|s| covers(s, p)));
    Ok(all
        .iter()
        .filter(|p| selected.contains(p.as_str()))
        .cloned()
        .collect())
}

/// A phase failed: `error execution phase <path>: <cause>`.
#[derive(Debug)]
pub struct PhaseError {
    /// The phase path.
    pub path: String,
    /// What went wrong.
    pub source: anyhow::Error,
}

impl fmt::Display for PhaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error execution phase {}", self.path)
    }
}

impl std::error::Error for PhaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Runs the planned phases of `tree` in order.
///
/// # Errors
/// The first failing phase, wrapped as [`PhaseError`].
pub fn run<D>(tree: &[Phase<D>], data: &mut D, planned: &[String]) -> Result<(), PhaseError> {
    fn walk<D>(
        prefix: &str,
        phases: &[Phase<D>],
        data: &mut D,
        planned: &[String],
    ) -> Result<(), PhaseError> {
        for p in phases {
            let path = if prefix.is_empty() {
                p.name.to_string()
            } else {
                format!("{prefix}/{}", p.name)
            };
            if planned.contains(&path)
                && p.run_if.is_none_or(|f| f(data))
                && let Some(run) = &p.run
            {
                let _span = info_span!("phase", %path).entered();
                tracing::debug!("running phase");
                run(data).map_err(|source| PhaseError {
                    path: path.clone(),
                    source,
                })?;
            }
            walk(&path, &p.children, data, planned)?;
        }
        Ok(())
    }
    walk("", tree, data, planned)
}

/// Finds a phase by path.
pub fn find<'a, D>(tree: &'a [Phase<D>], path: &str) -> Option<&'a Phase<D>> {
    let mut parts = path.split('/');
    let first = parts.next()?;
    let mut cur = tree.iter().find(|p| p.name == first)?;
    for part in parts {
        cur = cur.children.iter().find(|p| p.name == part)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: &mut Vec<String>) -> anyhow::Result<()> {
        Ok(())
    }

    // kubeadm: cmd/phases/workflow/runner_test.go, TestComputePhaseRunFlags's tree.
    fn tree() -> Vec<Phase<Vec<String>>> {
        vec![
            Phase::group(
                "foo",
                "",
                vec![Phase::new("bar", "", noop), Phase::new("baz", "", noop)],
            ),
            Phase::new("qux", "", noop),
        ]
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn no_options_runs_all_phases() {
        assert_eq!(
            plan(&tree(), &[], &[]).unwrap(),
            s(&["foo", "foo/bar", "foo/baz", "qux"])
        );
    }

    #[test]
    fn options_can_filter_phases() {
        assert_eq!(
            plan(&tree(), &s(&["foo/baz", "qux"]), &[]).unwrap(),
            s(&["foo/baz", "qux"])
        );
    }

    #[test]
    fn filter_considers_hierarchy() {
        assert_eq!(
            plan(&tree(), &s(&["foo"]), &[]).unwrap(),
            s(&["foo", "foo/bar", "foo/baz"])
        );
    }

    #[test]
    fn options_can_skip_phases() {
        assert_eq!(
            plan(&tree(), &[], &s(&["foo/bar", "qux"])).unwrap(),
            s(&["foo", "foo/baz"])
        );
    }

    #[test]
    fn skip_considers_hierarchy() {
        assert_eq!(plan(&tree(), &[], &s(&["foo"])).unwrap(), s(&["qux"]));
    }

    #[test]
    fn skip_beats_filter() {
        assert_eq!(
            plan(&tree(), &s(&["foo"]), &s(&["foo/bar"])).unwrap(),
            s(&["foo", "foo/baz"])
        );
    }

    #[test]
    fn invalid_filter_option() {
        let err = plan(&tree(), &s(&["invalid"]), &[]).unwrap_err();
        assert_eq!(err.name, "invalid");
        assert!(err.to_string().contains("foo/bar"), "{err}");
    }

    #[test]
    fn invalid_skip_option() {
        assert!(plan(&tree(), &[], &s(&["invalid"])).is_err());
    }

    #[test]
    fn all_alias_and_case_are_accepted() {
        assert_eq!(
            plan(&tree(), &s(&["FOO/all"]), &[]).unwrap(),
            s(&["foo", "foo/bar", "foo/baz"])
        );
    }

    #[test]
    fn run_executes_in_order_and_names_the_failing_phase() {
        let t: Vec<Phase<Vec<String>>> = vec![
            Phase::new("a", "", |d: &mut Vec<String>| {
                d.push("a".into());
                Ok(())
            }),
            Phase::group(
                "g",
                "",
                vec![
                    Phase::new("b", "", |d: &mut Vec<String>| {
                        d.push("b".into());
                        Ok(())
                    }),
                    Phase::new("c", "", |_: &mut Vec<String>| anyhow::bail!("boom")),
                ],
            ),
            Phase::new("d", "", |d: &mut Vec<String>| {
                d.push("d".into());
                Ok(())
            }),
        ];
        let mut seen = Vec::new();
        let err = run(&t, &mut seen, &plan(&t, &[], &[]).unwrap()).unwrap_err();
        assert_eq!(seen, s(&["a", "b"]));
        assert_eq!(err.to_string(), "error execution phase g/c");
        assert_eq!(err.source.to_string(), "boom");
    }

    #[test]
    fn run_if_false_skips_phase() {
        let t: Vec<Phase<Vec<String>>> = vec![
            Phase::new("a", "", |d: &mut Vec<String>| {
                d.push("a".into());
                Ok(())
            })
            .when(|d| !d.is_empty()),
        ];
        let mut seen = Vec::new();
        run(&t, &mut seen, &plan(&t, &[], &[]).unwrap()).unwrap();
        assert!(seen.is_empty());
    }
}
