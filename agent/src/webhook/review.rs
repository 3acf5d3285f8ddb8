//! The agent webhook's decision, pure: an AdmissionReview v1 in, an AdmissionReview v1 out
//! ([`respond`]), and the rule itself ([`decide`]).
//!
//! # The rule
//!
//! A request from a user **not** in the group `kubeboot:agents` is allowed untouched: RBAC and
//! the other admission plugins already decided it, and this webhook exists only to narrow what
//! the agents' credential can do.
//!
//! A request from `kubeboot:agent:<node>` in that group is allowed only for a Pod the agent of
//! `<node>` publishes ([`crate::mirror::object::api_pod`]), i.e. one that no kubelet and no
//! scheduler ever acts on:
//!
//! | rule | why it is enough / needed |
//! |---|---|
//! | `agent-name` | the node comes from the user name; a member of the group without one gets nothing |
//! | `pods-only` | the agent writes pods and pods/status, nothing else |
//! | `operation` | create and update of pods, update of pods/status, delete of pods |
//! | `no-node-name` | `spec.nodeName` empty: no kubelet runs it (a kubelet runs exactly the pods bound to its node). The field is immutable once set, and binding needs pods/binding, which the agent may not create |
//! | `agent-scheduler` | `spec.schedulerName: kubeboot-agent`: no scheduler binds it (each takes only pods with its own name; the field is immutable) |
//! | `own-node-label` | label `kubeboot.io/agent-node` = the caller's node: an agent touches only its own node's pods |
//! | `no-owner-references` | no ownerReferences: the pod belongs to no controller and to no other object's lifetime (the agent sets none; NodeRestriction likewise refuses mirror pods owned by anything but their node) |
//!
//! With `spec.nodeName` empty and `spec.schedulerName` one no scheduler serves (an operator who
//! deploys a scheduler with a profile named `kubeboot-agent` would undo this), the pod never
//! runs anywhere: what its spec asks for (privileged, hostPath, a ServiceAccount, node
//! selectors, tolerations) grants nothing, so those fields are not checked. The object
//! checks apply to the pod written (CREATE, UPDATE) and to the pod in the API (UPDATE,
//! pods/status UPDATE, DELETE: `oldObject`), so an agent can neither make nor touch a pod that
//! is not a status-only pod of its own node.
//!
//! What it leaves open, as for the kubelet's own mirror pods: labels and status are the
//! agent's to write, so a published pod whose labels match a kube-system Service's selector
//! lists its podIP in that Service's endpoints, exactly as a static pod of a kubelet would.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use components::names;

use crate::mirror::object::node_label_value;

/// The AdmissionReview API version the webhook speaks (and the configuration asks for).
pub const ADMISSION_V1: &str = "admission.k8s.io/v1";

/// An AdmissionReview as the API server sends it: only the fields the decision reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    /// `admission.k8s.io/v1`.
    pub api_version: String,
    /// `AdmissionReview`.
    pub kind: String,
    /// The request; absent only in a malformed review.
    pub request: Option<AdmissionRequest>,
}

/// `AdmissionReview.request`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Echoed in the response.
    pub uid: String,
    /// The resource requested (`pods` in the core group).
    pub resource: GroupVersionResource,
    /// `status` for pods/status, absent for the pod itself.
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: String,
    /// Who asks.
    pub user_info: UserInfo,
    /// The object written (CREATE, UPDATE); null for DELETE.
    #[serde(default)]
    pub object: Option<Value>,
    /// The object as it is in the API (UPDATE, DELETE).
    #[serde(default)]
    pub old_object: Option<Value>,
}

/// `request.resource`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupVersionResource {
    /// Empty for the core group.
    #[serde(default)]
    pub group: String,
    /// `v1`.
    #[serde(default)]
    pub version: String,
    /// `pods`.
    #[serde(default)]
    pub resource: String,
}

/// `request.userInfo`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInfo {
    /// The authenticated user name.
    #[serde(default)]
    pub username: String,
    /// The user's groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A rule an agent's request broke; its name is in the denial message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The caller is in the agents' group without an agent's user name.
    AgentName,
    /// Not pods or pods/status.
    PodsOnly,
    /// An operation the agent never makes.
    Operation,
    /// `spec.nodeName` set.
    NoNodeName,
    /// `spec.schedulerName` not kubeboot's.
    AgentScheduler,
    /// Not labelled with the caller's node.
    OwnNodeLabel,
    /// `metadata.ownerReferences` set.
    NoOwnerReferences,
}

impl Rule {
    /// The rule's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Rule::AgentName => "agent-name",
            Rule::PodsOnly => "pods-only",
            Rule::Operation => "operation",
            Rule::NoNodeName => "no-node-name",
            Rule::AgentScheduler => "agent-scheduler",
            Rule::OwnNodeLabel => "own-node-label",
            Rule::NoOwnerReferences => "no-owner-references",
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule broken.
    pub rule: Rule,
    /// The message the user sees (`admission webhook "..." denied the request: <message>`).
    pub message: String,
}

/// The node of a caller in the agents' group, or None for any other caller.
fn agent_node(user: &UserInfo) -> Option<Result<&str, Denial>> {
    if !user
        .groups
        .iter()
        .any(|g| g == names::KUBEBOOT_AGENTS_GROUP)
    {
        return None;
    }
    Some(
        user.username
            .strip_prefix(names::KUBEBOOT_AGENT_USER_PREFIX)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Denial {
                rule: Rule::AgentName,
                message: format!(
                    "{:?} is in the group {:?} but is not named {}<node>; kubeboot admits requests of that group only from a node's agent [rule {}]",
                    user.username,
                    names::KUBEBOOT_AGENTS_GROUP,
                    names::KUBEBOOT_AGENT_USER_PREFIX,
                    Rule::AgentName.name()
                ),
            }),
    )
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Checks that `pod` is a status-only pod of the agent of `node`; `which` names it in the
/// message (`the pod written`, `the pod in the API`).
fn check_pod(
    pod: &Value,
    node: &str,
    which: &str,
    deny: impl Fn(Rule, String) -> Denial,
) -> Result<(), Denial> {
    let node_name = str_at(pod, &["spec", "nodeName"]).unwrap_or_default();
    if !node_name.is_empty() {
        return Err(deny(
            Rule::NoNodeName,
            format!(
                "{which} has spec.nodeName {node_name:?}; it must be empty, so that no kubelet runs it"
            ),
        ));
    }
    let scheduler = str_at(pod, &["spec", "schedulerName"]).unwrap_or_default();
    if scheduler != names::KUBEBOOT_AGENT_SCHEDULER_NAME {
        return Err(deny(
            Rule::AgentScheduler,
            format!(
                "{which} has spec.schedulerName {scheduler:?}; it must be {:?}, so that no scheduler binds it to a node",
                names::KUBEBOOT_AGENT_SCHEDULER_NAME
            ),
        ));
    }
    let want = node_label_value(node);
    let label = str_at(pod, &["metadata", "labels", names::LABEL_AGENT_NODE]);
    if label != Some(want.as_str()) {
        return Err(deny(
            Rule::OwnNodeLabel,
            format!(
                "{which} has label {}={}; it must be {want:?}, this agent's node",
                names::LABEL_AGENT_NODE,
                label.map_or_else(|| "<none>".to_string(), |l| format!("{l:?}"))
            ),
        ));
    }
    let owners = pod
        .get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if owners > 0 {
        return Err(deny(
            Rule::NoOwnerReferences,
            format!(
                "{which} has {owners} ownerReferences; it must have none, so that no controller counts or adopts it"
            ),
        ));
    }
    Ok(())
}

/// The decision for one request: `Ok` to allow, the broken rule otherwise.
///
/// # Errors
/// A [`Denial`] naming the rule, for an agent's request that is not about a status-only pod
/// of its own node.
pub fn decide(req: &AdmissionRequest) -> Result<(), Denial> {
    let node = match agent_node(&req.user_info) {
        None => return Ok(()),
        Some(n) => n?,
    };
    let user = &req.user_info.username;
    let deny = |rule: Rule, why: String| Denial {
        rule,
        message: format!(
            "{user} may only write the status-only Pods its agent publishes: {why} [rule {}]",
            rule.name()
        ),
    };
    let sub = req.sub_resource.as_deref().unwrap_or_default();
    let r = &req.resource;
    if !r.group.is_empty() || r.resource != "pods" || !matches!(sub, "" | "status") {
        let shown = if sub.is_empty() {
            r.resource.clone()
        } else {
            format!("{}/{sub}", r.resource)
        };
        return Err(deny(
            Rule::PodsOnly,
            format!(
                "{shown:?} (API group {:?}) is neither pods nor pods/status",
                r.group
            ),
        ));
    }
    let (new, old) = match (req.operation.as_str(), sub) {
        ("CREATE", "") => (true, false),
        ("UPDATE", _) => (true, true),
        ("DELETE", "") => (false, true),
        (op, _) => {
            return Err(deny(
                Rule::Operation,
                format!(
                    "{op} of {:?} is not one of create, update, update of status, delete",
                    r.resource
                ),
            ));
        }
    };
    let null = Value::Null;
    if old {
        let pod = req.old_object.as_ref().unwrap_or(&null);
        check_pod(pod, node, "the pod in the API", deny)?;
    }
    if new {
        let pod = req.object.as_ref().unwrap_or(&null);
        check_pod(pod, node, "the pod written", deny)?;
    }
    Ok(())
}

/// `AdmissionReview.response`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionResponse {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<ResponseStatus>,
}

/// The metav1.Status of a denial.
#[derive(Debug, Clone, Serialize)]
struct ResponseStatus {
    code: u16,
    reason: &'static str,
    message: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut {
    api_version: &'static str,
    kind: &'static str,
    response: AdmissionResponse,
}

/// What the webhook sends back for one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The AdmissionReview with the response, as JSON.
    pub body: Vec<u8>,
    /// The denial message, for the agent's log; None when allowed.
    pub denied: Option<String>,
}

/// The webhook's answer to a request body: `Ok` with the AdmissionReview to send back (HTTP
/// 200, allowed or denied), or `Err` with why the body is not an AdmissionReview v1 request
/// (HTTP 400; the API server then applies the failure policy).
///
/// # Errors
/// A body that is not JSON, not `admission.k8s.io/v1` `AdmissionReview`, or has no request.
pub fn respond(body: &[u8]) -> Result<Answer, String> {
    let review: AdmissionReview =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    if review.api_version != ADMISSION_V1 || review.kind != "AdmissionReview" {
        return Err(format!(
            "expected {ADMISSION_V1} AdmissionReview, got {} {}",
            review.api_version, review.kind
        ));
    }
    let req = review
        .request
        .ok_or_else(|| "the AdmissionReview has no request".to_string())?;
    let denied = decide(&req).err().map(|d| d.message);
    let response = AdmissionResponse {
        uid: req.uid,
        allowed: denied.is_none(),
        status: denied.as_ref().map(|message| ResponseStatus {
            code: 403,
            reason: "Forbidden",
            message: message.clone(),
        }),
    };
    let body = serde_json::to_vec(&ReviewOut {
        api_version: ADMISSION_V1,
        kind: "AdmissionReview",
        response,
    })
    .map_err(|e| format!("could not encode the response: {e}"))?;
    Ok(Answer { body, denied })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod as the agent of `node` publishes it.
    fn published(node: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("etcd-{node}"),
                "namespace": "kube-system",
                "labels": {"component": "etcd", "tier": "control-plane", "kubeboot.io/agent-node": node},
                "annotations": {"kubernetes.io/config.source": "kubeboot-agent"}
            },
            "spec": {
                "schedulerName": "kubeboot-agent",
                "hostNetwork": true,
                "containers": [{"name": "etcd", "image": "k8s.gcr.io/etcd:3.4.13-0"}]
            }
        })
    }

    fn with(mut pod: Value, path: &[&str], value: Value) -> Value {
        let (last, parents) = path.split_last().expect("path");
        let mut v = &mut pod;
        for k in parents {
            v = v
                .as_object_mut()
                .expect("object")
                .entry(k.to_string())
                .or_insert_with(|| json!({}));
        }
        v.as_object_mut()
            .expect("object")
            .insert(last.to_string(), value);
        pod
    }

    fn agent(node: &str) -> UserInfo {
        UserInfo {
            username: format!("kubeboot:agent:{node}"),
            groups: vec!["kubeboot:agents".into(), "system:authenticated".into()],
        }
    }

    fn admin() -> UserInfo {
        UserInfo {
            username: "kubernetes-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    fn req(
        user: UserInfo,
        op: &str,
        sub: Option<&str>,
        object: Option<Value>,
        old: Option<Value>,
    ) -> AdmissionRequest {
        AdmissionRequest {
            uid: "u-1".into(),
            resource: GroupVersionResource {
                group: String::new(),
                version: "v1".into(),
                resource: "pods".into(),
            },
            sub_resource: sub.map(str::to_string),
            operation: op.into(),
            user_info: user,
            object,
            old_object: old,
        }
    }

    /// The privileged pod the agent's credential could create with RBAC alone.
    fn ordinary_pod() -> Value {
        json!({
            "metadata": {"name": "evil", "namespace": "kube-system"},
            "spec": {
                "nodeName": "node2",
                "serviceAccountName": "clusterrole-aggregation-controller",
                "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}],
                "volumes": [{"name": "root", "hostPath": {"path": "/"}}]
            }
        })
    }

    #[test]
    fn table_of_rules() {
        let ok = published("node1");
        let other = published("node2");
        let cases: Vec<(&str, AdmissionRequest, Option<Rule>)> = vec![
            // The agent's own calls (agent::mirror) and reset's deletes.
            (
                "agent creates its pod",
                req(agent("node1"), "CREATE", None, Some(ok.clone()), None),
                None,
            ),
            (
                "agent writes its pod's status",
                req(
                    agent("node1"),
                    "UPDATE",
                    Some("status"),
                    Some(ok.clone()),
                    Some(ok.clone()),
                ),
                None,
            ),
            (
                "agent deletes its pod",
                req(agent("node1"), "DELETE", None, None, Some(ok.clone())),
                None,
            ),
            // Anyone else: untouched, whatever the pod.
            (
                "admin creates an ordinary pod",
                req(admin(), "CREATE", None, Some(ordinary_pod()), None),
                None,
            ),
            (
                "a kubelet updates a bound pod's status",
                req(
                    UserInfo {
                        username: "system:node:node2".into(),
                        groups: vec!["system:nodes".into()],
                    },
                    "UPDATE",
                    Some("status"),
                    Some(ordinary_pod()),
                    Some(ordinary_pod()),
                ),
                None,
            ),
            (
                "an agent-like name outside the group",
                req(
                    UserInfo {
                        username: "kubeboot:agent:node1".into(),
                        groups: vec![],
                    },
                    "CREATE",
                    None,
                    Some(ordinary_pod()),
                    None,
                ),
                None,
            ),
            // The agent's credential for anything else.
            (
                "agent creates an ordinary privileged pod",
                req(agent("node1"), "CREATE", None, Some(ordinary_pod()), None),
                Some(Rule::NoNodeName),
            ),
            (
                "agent binds its pod to a node",
                req(
                    agent("node1"),
                    "CREATE",
                    None,
                    Some(with(ok.clone(), &["spec", "nodeName"], json!("node1"))),
                    None,
                ),
                Some(Rule::NoNodeName),
            ),
            (
                "agent leaves the default scheduler",
                req(
                    agent("node1"),
                    "CREATE",
                    None,
                    Some(with(
                        ok.clone(),
                        &["spec", "schedulerName"],
                        json!("default-scheduler"),
                    )),
                    None,
                ),
                Some(Rule::AgentScheduler),
            ),
            (
                "agent omits the scheduler",
                req(
                    agent("node1"),
                    "CREATE",
                    None,
                    Some(json!({"metadata": ok["metadata"].clone(), "spec": {"containers": []}})),
                    None,
                ),
                Some(Rule::AgentScheduler),
            ),
            (
                "agent creates another node's pod",
                req(agent("node1"), "CREATE", None, Some(other.clone()), None),
                Some(Rule::OwnNodeLabel),
            ),
            (
                "agent creates an unlabelled pod",
                req(
                    agent("node1"),
                    "CREATE",
                    None,
                    Some(with(
                        ok.clone(),
                        &["metadata", "labels"],
                        json!({"component": "etcd"}),
                    )),
                    None,
                ),
                Some(Rule::OwnNodeLabel),
            ),
            (
                "agent gives its pod an owner",
                req(
                    agent("node1"),
                    "CREATE",
                    None,
                    Some(with(
                        ok.clone(),
                        &["metadata", "ownerReferences"],
                        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "coredns-x", "uid": "1", "controller": true}]),
                    )),
                    None,
                ),
                Some(Rule::NoOwnerReferences),
            ),
            (
                "agent writes another node's pod's status",
                req(
                    agent("node1"),
                    "UPDATE",
                    Some("status"),
                    Some(other.clone()),
                    Some(other.clone()),
                ),
                Some(Rule::OwnNodeLabel),
            ),
            (
                "agent writes an ordinary pod's status",
                req(
                    agent("node1"),
                    "UPDATE",
                    Some("status"),
                    Some(ordinary_pod()),
                    Some(ordinary_pod()),
                ),
                Some(Rule::NoNodeName),
            ),
            (
                "agent relabels another node's pod as its own",
                req(
                    agent("node1"),
                    "UPDATE",
                    None,
                    Some(ok.clone()),
                    Some(other.clone()),
                ),
                Some(Rule::OwnNodeLabel),
            ),
            (
                "agent gives its own pod away",
                req(
                    agent("node1"),
                    "UPDATE",
                    None,
                    Some(other.clone()),
                    Some(ok.clone()),
                ),
                Some(Rule::OwnNodeLabel),
            ),
            (
                "agent deletes another node's pod",
                req(agent("node1"), "DELETE", None, None, Some(other.clone())),
                Some(Rule::OwnNodeLabel),
            ),
            (
                "agent deletes an ordinary pod",
                req(agent("node1"), "DELETE", None, None, Some(ordinary_pod())),
                Some(Rule::NoNodeName),
            ),
            (
                "agent deletes with no old object",
                req(agent("node1"), "DELETE", None, None, None),
                Some(Rule::AgentScheduler),
            ),
            (
                "agent execs into a pod",
                req(agent("node1"), "CONNECT", Some("exec"), None, None),
                Some(Rule::PodsOnly),
            ),
            (
                "agent creates a binding",
                req(
                    agent("node1"),
                    "CREATE",
                    Some("binding"),
                    Some(json!({})),
                    None,
                ),
                Some(Rule::PodsOnly),
            ),
            (
                "agent creates a status",
                req(
                    agent("node1"),
                    "CREATE",
                    Some("status"),
                    Some(ok.clone()),
                    None,
                ),
                Some(Rule::Operation),
            ),
            (
                "agent connects to a pod",
                req(agent("node1"), "CONNECT", None, None, None),
                Some(Rule::Operation),
            ),
            (
                "a group member that is no agent",
                req(
                    UserInfo {
                        username: "mallory".into(),
                        groups: vec!["kubeboot:agents".into()],
                    },
                    "CREATE",
                    None,
                    Some(ok.clone()),
                    None,
                ),
                Some(Rule::AgentName),
            ),
            (
                "an agent name without a node",
                req(
                    UserInfo {
                        username: "kubeboot:agent:".into(),
                        groups: vec!["kubeboot:agents".into()],
                    },
                    "CREATE",
                    None,
                    Some(published("")),
                    None,
                ),
                Some(Rule::AgentName),
            ),
        ];
        for (name, r, want) in cases {
            let got = decide(&r);
            assert_eq!(got.as_ref().err().map(|d| d.rule), want, "{name}: {got:?}");
            if let Err(d) = got {
                assert!(
                    d.message.ends_with(&format!("[rule {}]", d.rule.name())),
                    "{name}: {}",
                    d.message
                );
            }
        }
    }

    #[test]
    fn other_resources_of_an_agent_are_denied() {
        let mut r = req(
            agent("node1"),
            "CREATE",
            None,
            Some(published("node1")),
            None,
        );
        r.resource.resource = "secrets".into();
        assert_eq!(decide(&r).map_err(|d| d.rule), Err(Rule::PodsOnly));
        let mut r = req(
            agent("node1"),
            "CREATE",
            None,
            Some(published("node1")),
            None,
        );
        r.resource.group = "apps".into();
        assert_eq!(decide(&r).map_err(|d| d.rule), Err(Rule::PodsOnly));
    }

    #[test]
    fn long_node_names_use_the_hashed_label() {
        let long = format!("{}.example.com", "n".repeat(60));
        let pod = with(
            published("x"),
            &["metadata", "labels", "kubeboot.io/agent-node"],
            json!(node_label_value(&long)),
        );
        assert!(decide(&req(agent(&long), "CREATE", None, Some(pod.clone()), None)).is_ok());
        // The full name as a label value is not this node's label.
        let full = with(
            published("x"),
            &["metadata", "labels", "kubeboot.io/agent-node"],
            json!(long),
        );
        assert!(decide(&req(agent(&long), "CREATE", None, Some(full), None)).is_err());
    }

    #[test]
    fn denial_message_names_user_field_and_rule() {
        let d = decide(&req(
            agent("node1"),
            "CREATE",
            None,
            Some(ordinary_pod()),
            None,
        ))
        .expect_err("denied");
        assert_eq!(
            d.message,
            "kubeboot:agent:node1 may only write the status-only Pods its agent publishes: the pod written has spec.nodeName \"node2\"; it must be empty, so that no kubelet runs it [rule no-node-name]"
        );
        let d = decide(&req(
            agent("node1"),
            "CREATE",
            None,
            Some(published("node2")),
            None,
        ))
        .expect_err("denied");
        assert!(
            d.message
                .contains("label kubeboot.io/agent-node=\"node2\"; it must be \"node1\""),
            "{}",
            d.message
        );
    }

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request
        }))
        .expect("json")
    }

    #[test]
    fn review_round_trip_allows_and_denies() {
        // As the API server sends it (k8s.io/api admission/v1 field names).
        let base = json!({
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "evil",
            "namespace": "kube-system",
            "operation": "CREATE",
            "userInfo": {"username": "kubeboot:agent:node1", "groups": ["kubeboot:agents", "system:authenticated"]},
            "object": ordinary_pod(),
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        });
        let out: Value =
            serde_json::from_slice(&respond(&review(base.clone())).expect("answers").body)
                .expect("json");
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(
            out["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        assert_eq!(out["response"]["allowed"], false);
        assert_eq!(out["response"]["status"]["code"], 403);
        assert!(
            out["response"]["status"]["message"]
                .as_str()
                .expect("message")
                .contains("[rule no-node-name]")
        );
        let mut allowed = base;
        allowed["object"] = published("node1");
        let out: Value = serde_json::from_slice(&respond(&review(allowed)).expect("answers").body)
            .expect("json");
        assert_eq!(out["response"]["allowed"], true);
        assert!(out["response"].get("status").is_none());
    }

    #[test]
    fn malformed_reviews_are_errors() {
        assert!(respond(b"not json").is_err());
        assert!(respond(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#).is_err());
        assert!(
            respond(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).is_err()
        );
        // A request missing its required fields is no request.
        assert!(respond(&review(json!({"uid": "x"}))).is_err());
    }
}
