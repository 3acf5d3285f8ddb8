//! `kubeboot token` (kubeadm: cmd/token.go): create, list, delete and generate bootstrap
//! tokens. Input is checked before the cluster is contacted, so bad input changes nothing.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Args, Subcommand};
use components::config::defaults::{DEFAULT_TOKEN_GROUP, DEFAULT_TOKEN_USAGES};
use phases::cluster::Cluster;
use phases::out::Out;
use phases::token::{self, TokenRequest};

/// `kubeboot token`: manage bootstrap tokens.
///
/// Bootstrap tokens are used for establishing bidirectional trust between a node joining the
/// cluster and a control-plane node. A bootstrap token is a Secret in the kube-system
/// namespace of type "bootstrap.kubernetes.io/token", named "bootstrap-token-(token-id)",
/// and of the form "[a-z0-9]{6}.[a-z0-9]{16}".
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// The kubeconfig file to use when talking to the cluster.
    #[arg(
        long,
        global = true,
        value_name = "string",
        default_value = "/etc/kubernetes/admin.conf"
    )]
    pub kubeconfig: PathBuf,
    /// Whether to enable dry-run mode or not
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommands,
}

/// `kubeboot token` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommands {
    /// Create bootstrap tokens on the server
    Create(CreateArgs),
    /// List bootstrap tokens on the server
    List,
    /// Delete bootstrap tokens on the server
    Delete {
        /// The full Token of the form "[a-z0-9]{6}.[a-z0-9]{16}" or the Token ID of the form "[a-z0-9]{6}" to delete.
        #[arg(value_name = "token-value")]
        tokens: Vec<String>,
    },
    /// Generate and print a bootstrap token, but do not create it on the server
    Generate,
}

/// `kubeboot token create`.
#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// The token to write, of the form "[a-z0-9]{6}.[a-z0-9]{16}"; a random token if not given.
    #[arg(value_name = "token")]
    pub token: Option<String>,
    /// Instead of printing only the token, print the full 'kubeboot join' flag needed to join the cluster using the token.
    #[arg(long)]
    pub print_join_command: bool,
    /// When used together with '--print-join-command', print the full 'kubeboot join' flag needed to join the cluster as a control-plane. To create a new certificate key you must use 'kubeboot init phase upload-certs --upload-certs'.
    #[arg(long, value_name = "string")]
    pub certificate_key: Option<String>,
    /// The duration before the token is automatically deleted (e.g. 1s, 2m, 3h). If set to '0', the token will never expire
    #[arg(long, value_name = "duration", default_value = "24h0m0s")]
    pub ttl: String,
    /// Describes the ways in which this token can be used. You can pass --usages multiple times or provide a comma separated list of options. Valid options: [signing,authentication]
    #[arg(long, value_name = "strings", value_delimiter = ',', default_values_t = DEFAULT_TOKEN_USAGES.map(String::from))]
    pub usages: Vec<String>,
    /// Extra groups that this token will authenticate as when used for authentication. Must match "\\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\\z"
    #[arg(long, value_name = "strings", value_delimiter = ',', default_values_t = [DEFAULT_TOKEN_GROUP.to_string()])]
    pub groups: Vec<String>,
    /// A human friendly description of how this token is used.
    #[arg(long, value_name = "string", default_value = "")]
    pub description: String,
}

/// Runs `kubeboot token ...`.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let out = Out::stdout();
    match args.command {
        TokenCommands::Generate => {
            out.line(&token::generate().to_string());
            Ok(())
        }
        TokenCommands::Create(c) => create(&out, &args.kubeconfig, args.dry_run, c),
        TokenCommands::List => {
            let cluster = connect(&out, &args.kubeconfig, args.dry_run)?;
            let (tokens, invalid) = token::list_tokens(&cluster)?;
            for e in invalid {
                eprint!("{e}");
            }
            let table = token::token_table(&tokens, SystemTime::now());
            for line in table.lines() {
                out.line(line);
            }
            Ok(())
        }
        TokenCommands::Delete { tokens } => {
            // Parse every argument before connecting: a malformed one changes nothing.
            for t in &tokens {
                token::delete_target(t)?;
            }
            if tokens.is_empty() {
                return token::delete_tokens(&Cluster::recording(Out::capture()), &tokens)
                    .map(|_| ());
            }
            let cluster = connect(&out, &args.kubeconfig, args.dry_run)?;
            for id in token::delete_tokens(&cluster, &tokens)? {
                out.line(&format!("bootstrap token {id:?} deleted"));
            }
            Ok(())
        }
    }
}

fn connect(out: &Out, kubeconfig: &std::path::Path, dry_run: bool) -> anyhow::Result<Cluster> {
    if dry_run {
        Ok(Cluster::recording(out.clone()))
    } else {
        Cluster::from_kubeconfig(kubeconfig)
    }
}

fn create(
    out: &Out,
    kubeconfig: &std::path::Path,
    dry_run: bool,
    c: CreateArgs,
) -> anyhow::Result<()> {
    if c.certificate_key.is_some() && !c.print_join_command {
        anyhow::bail!("cannot use --certificate-key without --print-join-command");
    }
    if let Some(key) = &c.certificate_key {
        // A malformed key would print a join command that can only fail.
        phases::init::upload_certs::check_certificate_key(key)
            .context("invalid argument for \"--certificate-key\" flag")?;
    }
    let ttl = token::parse_ttl(&c.ttl).context("invalid argument for \"--ttl\" flag")?;
    let spec = token::token_spec(
        &TokenRequest {
            token: c.token.clone(),
            description: c.description.clone(),
            ttl,
            usages: c.usages.clone(),
            groups: c.groups.clone(),
        },
        SystemTime::now(),
    )?;
    // The join command needs the kubeconfig's cluster: read it before creating anything.
    let join = if c.print_join_command {
        let text = std::fs::read_to_string(kubeconfig).with_context(|| {
            format!(
                "failed to load kubeconfig {:?}",
                kubeconfig.display().to_string()
            )
        })?;
        Some(token::join_facts(&text).context("failed to get join command")?)
    } else {
        None
    };
    let cluster = connect(out, kubeconfig, dry_run)?;
    token::create_token(&cluster, &spec, true)?;
    match join {
        Some((endpoint, hashes)) => out.line(&token::join_command(
            &endpoint,
            &spec.token.to_string(),
            &hashes,
            c.certificate_key.is_some(),
            c.certificate_key.as_deref(),
        )),
        None => out.line(&spec.token.to_string()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Commands};

    fn parse(args: &[&str]) -> TokenArgs {
        let mut v = vec!["kubeboot", "token"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).expect("parses").command {
            Commands::Token(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_has_kubeadms_defaults() {
        let t = parse(&["create"]);
        assert_eq!(t.kubeconfig, PathBuf::from("/etc/kubernetes/admin.conf"));
        let TokenCommands::Create(c) = t.command else {
            panic!("create")
        };
        assert_eq!(c.ttl, "24h0m0s");
        assert_eq!(c.usages, vec!["signing", "authentication"]);
        assert_eq!(
            c.groups,
            vec!["system:bootstrappers:kubeadm:default-node-token"]
        );
    }

    #[test]
    fn bad_input_fails_before_any_connection() {
        let bad = |args: &[&str]| {
            let t = parse(args);
            run(t).expect_err("refused").to_string()
        };
        let missing = ["--kubeconfig", "/nonexistent/admin.conf"];
        let with = |extra: &[&str]| {
            let mut v = vec!["create"];
            v.extend_from_slice(extra);
            v.extend_from_slice(&missing);
            bad(&v)
        };
        assert!(with(&["--ttl", "abc"]).contains("--ttl"));
        assert!(with(&["--usages", "bogus"]).contains("invalid bootstrap token usage"));
        assert!(with(&["--groups", "system:nodes"]).contains("must match"));
        assert!(with(&["abcdef.short"]).contains("does not match the format"));
        assert!(
            bad(&[
                "delete",
                "NOT-A-TOKEN",
                "--kubeconfig",
                "/nonexistent/admin.conf"
            ])
            .contains("didn't match pattern")
        );
        assert!(bad(&["delete"]).contains("missing subcommand"));
    }

    /// `token create --print-join-command --certificate-key K` prints kubeadm's control-plane
    /// join command on one line; a malformed key is refused before the cluster is contacted,
    /// without repeating it.
    #[test]
    fn control_plane_join_command_carries_the_certificate_key() {
        use base64::Engine;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = include_str!("../../pki/tests/golden/v1.20.2/certs/ca.crt");
        let kubeconfig = dir.path().join("admin.conf");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: {}\ncontexts:\n- name: admin@kubernetes\n  context: {{cluster: kubernetes, user: admin}}\ncurrent-context: admin@kubernetes\nusers:\n- name: admin\n  user: {{}}\n",
                base64::engine::general_purpose::STANDARD.encode(ca)
            ),
        )
        .expect("kubeconfig");
        let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let args = |key: &str| {
            let t = parse(&[
                "create",
                "abcdef.0123456789abcdef",
                "--print-join-command",
                "--certificate-key",
                key,
            ]);
            let TokenCommands::Create(c) = t.command else {
                panic!("create")
            };
            c
        };
        let out = Out::capture();
        create(&out, &kubeconfig, true, args(key)).expect("dry-run create");
        let join = out
            .captured()
            .lines()
            .find(|l| l.starts_with("kubeboot join"))
            .expect("a join command")
            .to_string();
        assert!(
            join.starts_with("kubeboot join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:"),
            "{join}"
        );
        assert!(
            join.ends_with(&format!("--control-plane --certificate-key {key}")),
            "{join}"
        );
        let e = create(&Out::capture(), &kubeconfig, true, args("0123")).expect_err("short");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("--certificate-key") && msg.contains("64 hexadecimal digits"),
            "{msg}"
        );
    }

    /// Issue 8: `token create --ttl 100000000h` panicked ("overflow adding duration to
    /// date"); it is an error naming the flag and the limit, before any connection.
    #[test]
    fn huge_ttl_is_an_error_not_a_panic() {
        let t = parse(&[
            "create",
            "--ttl",
            "100000000h",
            "--kubeconfig",
            "/nonexistent/admin.conf",
        ]);
        let e = format!("{:#}", run(t).expect_err("refused"));
        assert!(
            e.contains("invalid argument for \"--ttl\" flag")
                && e.contains("\"100000000h\": it is too large (max 2562047h47m16.854775807s)"),
            "{e}"
        );
    }
}
