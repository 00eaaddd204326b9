//! `doctor --backend kubernetes`: may we run here (RBAC), does the namespace enforce the
//! `restricted` Pod Security level, and what the API cannot tell about NetworkPolicy.

use super::client::{KubeApi, KubeError};

/// Every permission a run, its cleanup and `gc` need in the namespace: (verb, API group,
/// resource). README "Running on Kubernetes" shows them as a Role.
pub(crate) const PERMISSIONS: [(&str, &str, &str); 24] = [
    ("create", "coordination.k8s.io", "leases"),
    ("update", "coordination.k8s.io", "leases"),
    ("list", "coordination.k8s.io", "leases"),
    ("delete", "coordination.k8s.io", "leases"),
    ("create", "", "secrets"),
    ("list", "", "secrets"),
    ("delete", "", "secrets"),
    ("create", "networking.k8s.io", "networkpolicies"),
    ("list", "networking.k8s.io", "networkpolicies"),
    ("delete", "networking.k8s.io", "networkpolicies"),
    ("create", "", "services"),
    ("list", "", "services"),
    ("delete", "", "services"),
    ("create", "apps", "deployments"),
    ("list", "apps", "deployments"),
    ("delete", "apps", "deployments"),
    ("create", "batch", "jobs"),
    ("list", "batch", "jobs"),
    ("delete", "batch", "jobs"),
    ("list", "", "pods"),
    ("delete", "", "pods"),
    ("get", "", "pods/log"),
    // The workspace's copy: in over attach, back over exec (websocket upgrades, authorized as
    // `create` by current API servers).
    ("create", "", "pods/attach"),
    ("create", "", "pods/exec"),
];

/// The namespace label that holds the enforced Pod Security level.
pub(crate) const PSA_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// Fine.
    Ok(String),
    /// Not fine; with the fix.
    Fail(String, String),
    /// The API cannot tell; what to check by hand.
    Unknown(String),
}

/// The RBAC finding: every permission of [`PERMISSIONS`] the caller lacks, by
/// SelfSubjectAccessReview (creating those is allowed to every authenticated user).
pub(crate) async fn rbac(api: &KubeApi) -> Result<Finding, KubeError> {
    let mut missing = Vec::new();
    for (verb, group, resource) in PERMISSIONS {
        if !api.may(verb, group, resource).await? {
            let group = if group.is_empty() { "core" } else { group };
            missing.push(format!("{verb} {resource} ({group})"));
        }
    }
    Ok(if missing.is_empty() {
        Finding::Ok(format!(
            "may do everything a run needs in namespace {} ({} permissions)",
            api.namespace(),
            PERMISSIONS.len()
        ))
    } else {
        Finding::Fail(
            format!("missing in namespace {}: {}", api.namespace(), missing.join(", ")),
            "bind the Role of README \"Running on Kubernetes\" to your user or service account in this namespace".into(),
        )
    })
}

/// The Pod Security finding: the namespace's enforced level. Our pods pass `restricted`;
/// anything less lets other pods of the namespace (which share its Secrets' readers) run
/// privileged. Reading a namespace needs a ClusterRole, so a refusal is [`Finding::Unknown`].
pub(crate) async fn pod_security(api: &KubeApi) -> Finding {
    let ns = api.namespace();
    let fix = format!("kubectl label namespace {ns} {PSA_ENFORCE}=restricted");
    match api.namespace_labels().await {
        Ok(labels) => match labels.get(PSA_ENFORCE).map(String::as_str) {
            Some("restricted") => Finding::Ok(format!("namespace {ns} enforces restricted")),
            Some(level) => Finding::Fail(format!("namespace {ns} enforces only {level}"), fix),
            None => Finding::Fail(
                format!(
                    "namespace {ns} has no {PSA_ENFORCE} label (the cluster's default applies, usually privileged)"
                ),
                fix,
            ),
        },
        Err(KubeError::Forbidden { .. }) => Finding::Unknown(format!(
            "may not read namespace {ns} (needs a ClusterRole); check its {PSA_ENFORCE} label is restricted"
        )),
        Err(e) => Finding::Unknown(format!("cannot read namespace {ns}: {e}")),
    }
}

/// The NetworkPolicy finding: the API accepts NetworkPolicies whether or not the network
/// plugin enforces them, and says nothing about which plugin runs. What cannot be told is said.
pub(crate) fn network_policy() -> Finding {
    Finding::Unknown(
        "the API cannot tell whether this cluster's network plugin enforces NetworkPolicy (the API accepts them either way; kindnet and flannel ignore them, Calico and Cilium enforce them); without enforcement a run's skills reach the internet directly. Ask your cluster's admin, or test: a pod under a deny-all egress policy must fail `wget -T 3 example.com`".into(),
    )
}
