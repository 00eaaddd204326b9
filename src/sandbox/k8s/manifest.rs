//! A [`RunPlan`] as Kubernetes objects: the run's pod as a Job, the egress proxy as a Deployment
//! behind a Service, and NetworkPolicies.
//!
//! - **One pod per run.** Skills and base-skill are native sidecars (`initContainers` with
//!   `restartPolicy: Always`, Kubernetes ≥ 1.29), started before the runtime, the Job's one
//!   container; the pod ends when the runtime does. They share one network namespace, so the
//!   proxy cannot tell them apart by network: each principal (the runtime, each skill with
//!   `allowedDomains`) has a token of its own in its proxy URL (`proxy::token`), and everyone
//!   else gets `407`.
//! - **The proxy in a pod of its own**, because the run pod's NetworkPolicy allows nothing but
//!   the proxy (and the cluster's DNS, to find it).
//! - **No value of any secret.** Every variable of a container is a `secretKeyRef` to a Secret
//!   the user manages, except the few this program sets itself ([`LITERAL_VARIABLES`]): the
//!   proxy URLs (whose token is `$(PSB_PROXY_TOKEN)`, expanded by the kubelet from a
//!   `secretKeyRef`), and the CA bundle's paths. The query too comes from the Secret.
//! - **Hardening as on Docker**: non-root with the plan's uid and gid, every capability dropped,
//!   no privilege escalation, read-only root with a memory-backed `/tmp`, seccomp
//!   `RuntimeDefault`, memory and CPU limits (request = limit), no service-account token, no
//!   service links, no host namespaces, a user namespace (`hostUsers: false`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::contract::paths::{CA_BUNDLE_VARIABLES, WORKSPACE_MOUNT};
use crate::proxy::PROXY_PORT;
use crate::sandbox::egress::{NODE_USE_ENV_PROXY, PROXY_ALIAS};
use crate::sandbox::plan::{ContainerPlan, MountSource, NetworkPlan, RunPlan};

/// The variable that holds a principal's proxy token, in its own container.
pub(crate) const TOKEN_VARIABLE: &str = "PSB_PROXY_TOKEN";
/// The variable that holds the query, in the runtime's container.
pub(crate) const QUERY_VARIABLE: &str = "PSB_QUERY";
/// The Secret key of the query.
pub(crate) const QUERY_KEY: &str = "query";

/// The proxy's variables: literal, with the principal's token spliced in.
const PROXY_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"];

/// Variables whose values this program sets and that are never secret: the proxy URLs (the
/// token in them is a reference), `NO_PROXY`, Node's proxy switch and the CA bundle's paths.
/// Every other variable becomes a `secretKeyRef`.
pub(crate) fn is_literal(name: &str) -> bool {
    PROXY_VARIABLES.contains(&name)
        || matches!(name, "NO_PROXY" | "no_proxy")
        || name == NODE_USE_ENV_PROXY
        || CA_BUNDLE_VARIABLES.contains(&name)
}

/// Where the run's workspace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Workspace {
    /// An `emptyDir` of at most this size (`"10Gi"`): gone with the pod.
    EmptyDir(String),
    /// A PersistentVolumeClaim the user made.
    Claim(String),
}

/// Where a variable's value is: a key of a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretKey {
    /// The Secret's name.
    pub secret: String,
    /// The key in it.
    pub key: String,
}

/// What the objects are made from besides the plan.
#[derive(Debug, Clone)]
pub(crate) struct Export {
    /// The objects' name and prefix (a DNS label, checked by the caller).
    pub name: String,
    /// Their namespace; `None`: the one `kubectl apply` uses.
    pub namespace: Option<String>,
    /// The image of each of the plan's images, by index.
    pub images: Vec<String>,
    /// The Secret every variable, the query and the tokens come from, unless `secrets` says
    /// otherwise.
    pub secret: String,
    /// Variables (and `query`, `proxy-token-<principal>`) kept elsewhere: `VAR` → Secret/key.
    pub secrets: BTreeMap<String, SecretKey>,
    /// The workspace.
    pub workspace: Workspace,
    /// `activeDeadlineSeconds` of the Job.
    pub deadline_seconds: Option<u64>,
    /// A controlled run's workspace copy; `None` for an export (no controller streams the
    /// workspace in).
    pub copy: Option<CopyContainers>,
}

/// The containers a controlled run's workspace copy adds to the run pod
/// (`sandbox/k8s/workspace.rs`), both from base-skill's image and as its user: the first init
/// container, which unpacks the tar streamed to its stdin into the workspace before any
/// sidecar starts, and a container after the runtime that keeps the pod — base-skill with it —
/// running until the controller has read the workspace back and deletes the pod.
#[derive(Debug, Clone)]
pub(crate) struct CopyContainers {
    /// base-skill's plan: image, user, limits.
    pub from: ContainerPlan,
    /// The init container's name and command.
    pub copy_in: (String, Vec<String>),
    /// The holding container's name and command.
    pub hold: (String, Vec<String>),
}

impl Export {
    /// Where `name` (a variable, `query` or a token's key) comes from.
    pub(crate) fn secret_key(&self, name: &str) -> SecretKey {
        self.secrets
            .get(name)
            .cloned()
            .unwrap_or_else(|| SecretKey {
                secret: self.secret.clone(),
                key: name.to_string(),
            })
    }
}

/// Why the plan cannot be written as Kubernetes objects.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    /// The plan names an image the export has no reference for.
    #[error("no image reference for {0} (the plan's image #{1})")]
    NoImage(String, usize),
    /// A container's user is not `uid:gid` of numbers, or is root.
    #[error(
        "{service} would run as `{user}`; a Kubernetes run needs a numeric non-root uid:gid\n  hint: pass --workspace-user UID:GID with a uid other than 0"
    )]
    User {
        /// The container.
        service: String,
        /// Its user.
        user: String,
    },
    /// A host folder outside the workspace is mounted.
    #[error(
        "{service} mounts {host}, which is not in the workspace; nothing from the host goes into a pod"
    )]
    HostMount {
        /// The container.
        service: String,
        /// The folder.
        host: String,
    },
}

/// The label every object this program makes carries, as a selector.
#[cfg(feature = "kubernetes")]
pub(crate) const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=perstack-sandbox";

/// The selector that finds every object of the run (or export) named `name`.
#[cfg(feature = "kubernetes")]
pub(crate) fn instance_selector(name: &str) -> String {
    format!("{MANAGED_SELECTOR},app.kubernetes.io/instance={name}")
}

/// The labels every object carries; `role` is `run`, `egress-proxy` or `lease`.
fn labels(export: &Export, role: &str) -> Value {
    json!({
        "app.kubernetes.io/managed-by": "perstack-sandbox",
        "app.kubernetes.io/instance": export.name,
        "sandbox.perstack.io/role": role,
    })
}

/// The labels a selector matches a role's pods by.
fn selector(export: &Export, role: &str) -> Value {
    json!({
        "app.kubernetes.io/instance": export.name,
        "sandbox.perstack.io/role": role,
    })
}

fn metadata(export: &Export, name: &str, role: &str) -> Value {
    let mut metadata = json!({"name": name, "labels": labels(export, role)});
    if let Some(namespace) = &export.namespace {
        metadata["namespace"] = json!(namespace);
    }
    metadata
}

/// The proxy's objects' name (its Service's is the host in every proxy URL).
pub(crate) fn proxy_name(export: &Export) -> String {
    format!("{}-{PROXY_ALIAS}", export.name)
}

/// The Secret key of a principal's token: `proxy-token-<principal>`, in the characters a key may
/// have.
pub(crate) fn token_key(principal: &str) -> String {
    let slug: String = principal
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("proxy-token-{slug}")
}

/// Every object of the run, in the order they should be applied: the fences first, then the
/// proxy, then the Job.
pub(crate) fn objects(plan: &RunPlan, export: &Export) -> Result<Vec<Value>, ManifestError> {
    let mut objects = vec![run_policy(plan, export)];
    if let Some(proxy) = proxy_objects(plan, export)? {
        objects.extend(proxy);
    }
    objects.push(job(plan, export)?);
    Ok(objects)
}

/// The name of the run pod's container that runs the runtime (whose log carries the events).
#[cfg(feature = "kubernetes")]
pub(crate) fn runtime_container(plan: &RunPlan) -> String {
    container_name(plan, &plan.runtime.service)
}

/// The name of the run pod's container of `service`.
#[cfg(feature = "kubernetes")]
pub(crate) fn container_name(plan: &RunPlan, service: &str) -> String {
    ContainerNames::of(plan).get(service)
}

/// The Lease that owns a controlled run's other objects (`run --backend kubernetes`; an export
/// has none): `holder` renews it every few seconds while the run is watched; `gc` deletes the
/// run of a Lease not renewed for `seconds`. `now` is an RFC 3339 time with microseconds.
#[cfg(feature = "kubernetes")]
pub(crate) fn lease(export: &Export, holder: &str, seconds: u32, now: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata(export, &export.name, "lease"),
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": seconds,
            "acquireTime": now,
            "renewTime": now
        }
    })
}

/// The Secret a controlled run makes for itself (an export leaves it to the user): the query,
/// every variable the plan hands a container and each proxy token, under the keys the objects'
/// `secretKeyRef`s name ([`Export::secret_key`] with no `secrets` overrides).
#[cfg(feature = "kubernetes")]
pub(crate) fn secret(export: &Export, data: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(export, &export.secret, "run"),
        "type": "Opaque",
        "stringData": data
    })
}

/// The run pod's NetworkPolicy: no ingress; egress to the proxy's port and to the cluster's DNS
/// (to find the proxy's Service), nothing else. Without a proxy: no egress at all.
fn run_policy(plan: &RunPlan, export: &Export) -> Value {
    let egress = match &plan.proxy {
        None => json!([]),
        Some(_) => json!([
            {
                "to": [{"podSelector": {"matchLabels": selector(export, "egress-proxy")}}],
                "ports": [{"protocol": "TCP", "port": PROXY_PORT}]
            },
            {
                "to": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}
                }],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
            }
        ]),
    };
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(export, &format!("{}-run", export.name), "run"),
        "spec": {
            "podSelector": {"matchLabels": selector(export, "run")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress
        }
    })
}

/// The proxy's NetworkPolicy (ingress from the run pod only), Service and Deployment.
fn proxy_objects(plan: &RunPlan, export: &Export) -> Result<Option<Vec<Value>>, ManifestError> {
    let Some(proxy) = &plan.proxy else {
        return Ok(None);
    };
    let name = proxy_name(export);
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(export, &name, "egress-proxy"),
        "spec": {
            "podSelector": {"matchLabels": selector(export, "egress-proxy")},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": selector(export, "run")}}],
                "ports": [{"protocol": "TCP", "port": PROXY_PORT}]
            }]
        }
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(export, &name, "egress-proxy"),
        "spec": {
            "selector": selector(export, "egress-proxy"),
            "ports": [{"name": "proxy", "protocol": "TCP", "port": PROXY_PORT, "targetPort": PROXY_PORT}]
        }
    });
    let mut container = container(&proxy.container, PROXY_ALIAS, export)?;
    let mut env = Vec::new();
    let mut principals = Vec::new();
    for (i, principal) in proxy.principals.iter().enumerate() {
        let variable = format!("PSB_TOKEN_{i}");
        env.push(secret_env(
            &variable,
            &export.secret_key(&token_key(&principal.name)),
        ));
        principals.push(json!({
            "name": principal.name,
            "tokenEnv": variable,
            "allow": {"rules": principal.allow},
            "trusted": principal.trusted,
        }));
    }
    env.push(json!({
        "name": "PERSTACK_PROXY_CONFIG",
        "value": json!({"principals": principals}).to_string()
    }));
    container["env"] = Value::Array(env);
    container["ports"] = json!([{"name": "proxy", "containerPort": PROXY_PORT, "protocol": "TCP"}]);
    let volumes = json!([tmp_volume(PROXY_ALIAS)]);
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(export, &name, "egress-proxy"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(export, "egress-proxy")},
            "template": {
                "metadata": {"labels": labels(export, "egress-proxy")},
                "spec": pod_spec(vec![], vec![container], volumes, "Always")
            }
        }
    });
    Ok(Some(vec![policy, service, deployment]))
}

/// The run as a Job: its pod runs the skills and base-skill as native sidecars, the runtime as
/// its container.
fn job(plan: &RunPlan, export: &Export) -> Result<Value, ManifestError> {
    let names = ContainerNames::of(plan);
    let mut volumes = VolumeSet::new(plan, export);
    let principals = principal_networks(plan);
    let mut sidecars = Vec::new();
    for skill in &plan.skills {
        let name = names.get(&skill.service);
        let mut c = container(skill, &name, export)?;
        c["env"] = Value::Array(env(skill, principal_of(skill, &principals), export));
        c["volumeMounts"] = Value::Array(volumes.mounts(skill, &name)?);
        c["restartPolicy"] = json!("Always");
        sidecars.push(c);
    }
    let runtime = &plan.runtime;
    let name = names.get(&runtime.service);
    let mut main = container(runtime, &name, export)?;
    let mut runtime_env = vec![secret_env(QUERY_VARIABLE, &export.secret_key(QUERY_KEY))];
    runtime_env.extend(env(runtime, principal_of(runtime, &principals), export));
    main["env"] = Value::Array(runtime_env);
    main["args"] = json!(runtime_args(&runtime.cmd));
    main["volumeMounts"] = Value::Array(volumes.mounts(runtime, &name)?);
    let mut containers = vec![main];
    if let Some(copy) = &export.copy {
        let (copy_in, hold) = copy_containers(copy, export, &mut volumes)?;
        sidecars.insert(0, copy_in);
        containers.push(hold);
    }
    let mut spec = pod_spec(sidecars, containers, volumes.into_list(), "Never");
    // One try: a second would start the Expert over with the same query.
    let mut job_spec = json!({
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": labels(export, "run")},
            "spec": spec.take()
        }
    });
    if let Some(seconds) = export.deadline_seconds {
        job_spec["activeDeadlineSeconds"] = json!(seconds);
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(export, &export.name, "run"),
        "spec": job_spec
    }))
}

/// The workspace copy's init container (the workspace read-write, stdin open once) and holding
/// container (no workspace): hardened as every container, their `/tmp` volumes added.
fn copy_containers(
    copy: &CopyContainers,
    export: &Export,
    volumes: &mut VolumeSet,
) -> Result<(Value, Value), ManifestError> {
    let (in_name, in_command) = &copy.copy_in;
    let mut copy_in = container(&copy.from, in_name, export)?;
    if let Some(fields) = copy_in.as_object_mut() {
        fields.remove("args");
    }
    copy_in["command"] = json!(in_command);
    copy_in["stdin"] = json!(true);
    copy_in["stdinOnce"] = json!(true);
    copy_in["volumeMounts"] = json!([
        {"name": tmp_name(in_name), "mountPath": "/tmp"},
        {"name": "workspace", "mountPath": WORKSPACE_MOUNT, "readOnly": false}
    ]);
    volumes.list.push(tmp_volume(in_name));
    volumes.workspace_used = true;
    let (hold_name, hold_command) = &copy.hold;
    let mut hold = container(&copy.from, hold_name, export)?;
    if let Some(fields) = hold.as_object_mut() {
        fields.remove("args");
    }
    hold["command"] = json!(hold_command);
    volumes.list.push(tmp_volume(hold_name));
    Ok((copy_in, hold))
}

/// The runtime's arguments with the query (the last one) replaced by a reference to its
/// variable, which the kubelet expands: the query is in the Secret, not in the Job.
fn runtime_args(cmd: &[String]) -> Vec<String> {
    let mut args = cmd.to_vec();
    if let Some(last) = args.last_mut() {
        *last = format!("$({QUERY_VARIABLE})");
    }
    args
}

/// The hardened pod spec every pod of a run has.
fn pod_spec(init: Vec<Value>, containers: Vec<Value>, volumes: Value, restart: &str) -> Value {
    let mut spec = json!({
        "restartPolicy": restart,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "shareProcessNamespace": false,
        "hostNetwork": false,
        "hostPID": false,
        "hostIPC": false,
        "hostUsers": false,
        "securityContext": {
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "containers": containers,
        "volumes": volumes
    });
    if !init.is_empty() {
        spec["initContainers"] = Value::Array(init);
    }
    spec
}

/// A container as the plan has it, hardened: image, arguments, user, limits, `/tmp`. Its `env`
/// and mounts are added by the caller.
fn container(plan: &ContainerPlan, name: &str, export: &Export) -> Result<Value, ManifestError> {
    let image = export
        .images
        .get(plan.image)
        .ok_or_else(|| ManifestError::NoImage(plan.service.clone(), plan.image))?;
    let (uid, gid) = user(plan)?;
    let memory = plan.limits.memory.to_string();
    let cpu = format!("{}m", (plan.limits.cpus * 1000.0).round() as i64);
    let resources = json!({"memory": memory, "cpu": cpu});
    let mut container = json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "runAsUser": uid,
            "runAsGroup": gid,
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        // Memory request = limit: no swap for it under LimitedSwap, as on Docker.
        "resources": {"limits": resources, "requests": resources},
        "volumeMounts": [{"name": tmp_name(name), "mountPath": "/tmp"}]
    });
    if !plan.cmd.is_empty() {
        container["args"] = json!(plan.cmd);
    }
    Ok(container)
}

/// The plan's `uid:gid`, numeric and not root.
fn user(plan: &ContainerPlan) -> Result<(u32, u32), ManifestError> {
    let bad = || ManifestError::User {
        service: plan.service.clone(),
        user: plan.user.clone(),
    };
    let (uid, gid) = plan.user.split_once(':').ok_or_else(bad)?;
    let (uid, gid): (u32, u32) = (
        uid.parse().map_err(|_| bad())?,
        gid.parse().map_err(|_| bad())?,
    );
    if uid == 0 {
        return Err(bad());
    }
    Ok((uid, gid))
}

/// A container's variables: every one a `secretKeyRef`, except the literal ones; a principal's
/// token first, so its proxy URL can refer to it.
fn env(plan: &ContainerPlan, principal: Option<&String>, export: &Export) -> Vec<Value> {
    let mut env = Vec::new();
    if let Some(principal) = principal {
        env.push(secret_env(
            TOKEN_VARIABLE,
            &export.secret_key(&token_key(principal)),
        ));
    }
    for (name, value) in &plan.env {
        if PROXY_VARIABLES.contains(&name.as_str()) {
            // A container without a token has no proxy URL either (it would only get 407).
            if let Some(principal) = principal {
                env.push(json!({"name": name, "value": proxy_url(principal, export)}));
            }
        } else if is_literal(name) {
            env.push(json!({"name": name, "value": value}));
        } else {
            env.push(secret_env(name, &export.secret_key(name)));
        }
    }
    env
}

/// A principal's proxy URL: its name, its token by reference, the proxy's Service.
fn proxy_url(principal: &str, export: &Export) -> String {
    let user: String =
        percent_encoding::utf8_percent_encode(principal, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    format!(
        "http://{user}:$({TOKEN_VARIABLE})@{}:{PROXY_PORT}",
        proxy_name(export)
    )
}

fn secret_env(name: &str, key: &SecretKey) -> Value {
    json!({
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": key.secret, "key": key.key}}
    })
}

/// Principals by the internal network the plan gave them: the container on that network is
/// that principal.
fn principal_networks(plan: &RunPlan) -> BTreeMap<String, String> {
    plan.proxy
        .iter()
        .flat_map(|proxy| &proxy.principals)
        .map(|p| (p.network.clone(), p.name.clone()))
        .collect()
}

/// The principal `plan` is: the one whose network it is on.
fn principal_of<'p>(
    plan: &ContainerPlan,
    principals: &'p BTreeMap<String, String>,
) -> Option<&'p String> {
    match &plan.network {
        NetworkPlan::Internal(network) => principals.get(network),
        NetworkPlan::None | NetworkPlan::Bridge => None,
    }
}

/// Container names: each service as a DNS label, made unique.
struct ContainerNames(BTreeMap<String, String>);

impl ContainerNames {
    fn of(plan: &RunPlan) -> ContainerNames {
        let mut taken = BTreeSet::new();
        let mut names = BTreeMap::new();
        for service in plan
            .skills
            .iter()
            .chain([&plan.runtime])
            .map(|c| &c.service)
        {
            let base = dns_label(service, 50);
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            names.insert(service.clone(), name);
        }
        ContainerNames(names)
    }

    fn get(&self, service: &str) -> String {
        self.0
            .get(service)
            .cloned()
            .unwrap_or_else(|| dns_label(service, 50))
    }
}

/// `text` as a DNS label (lowercase alphanumerics and `-`, starting and ending alphanumeric) of
/// at most `max` characters.
pub(crate) fn dns_label(text: &str, max: usize) -> String {
    let mut label = String::new();
    for c in text.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            label.push(c);
        } else if !label.ends_with('-') && !label.is_empty() {
            label.push('-');
        }
    }
    label.truncate(max);
    let label = label.trim_end_matches('-').to_string();
    if label.is_empty() {
        "x".to_string()
    } else {
        label
    }
}

/// The pod's volumes, named as Kubernetes wants, and each container's mounts of them.
struct VolumeSet<'a> {
    export: &'a Export,
    /// The plan's socket volumes by the plan's name → the pod's.
    sockets: BTreeMap<String, String>,
    /// The pod's volumes, in order.
    list: Vec<Value>,
    workspace_used: bool,
    /// The workspace's folder in the plan (what bind mounts lie under).
    workspace_root: Option<String>,
}

impl<'a> VolumeSet<'a> {
    fn new(plan: &RunPlan, export: &'a Export) -> VolumeSet<'a> {
        let mut sockets = BTreeMap::new();
        let mut list = Vec::new();
        for (i, volume) in plan.volumes.iter().enumerate() {
            let name = format!("socket-{i}");
            // A socket and nothing else: 1 MiB of memory, as the tmpfs on Docker.
            list.push(json!({"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}));
            sockets.insert(volume.name.clone(), name);
        }
        let workspace_root = plan
            .skills
            .iter()
            .flat_map(|c| &c.mounts)
            .find(|m| m.target == WORKSPACE_MOUNT)
            .and_then(|m| match &m.source {
                MountSource::Bind { host } => Some(host.clone()),
                _ => None,
            });
        VolumeSet {
            export,
            sockets,
            list,
            workspace_used: false,
            workspace_root,
        }
    }

    /// `plan`'s mounts as the pod's (`/tmp` included), adding the volumes they need.
    fn mounts(&mut self, plan: &ContainerPlan, name: &str) -> Result<Vec<Value>, ManifestError> {
        self.list.push(tmp_volume(name));
        let mut mounts = vec![json!({"name": tmp_name(name), "mountPath": "/tmp"})];
        for (i, mount) in plan.mounts.iter().enumerate() {
            let mut entry = json!({"mountPath": mount.target, "readOnly": mount.read_only});
            match &mount.source {
                MountSource::Volume { name: volume } => {
                    let Some(pod_volume) = self.sockets.get(volume) else {
                        continue;
                    };
                    entry["name"] = json!(pod_volume);
                }
                MountSource::Bind { host } => {
                    entry["name"] = json!("workspace");
                    let sub = self.workspace_sub_path(plan, host)?;
                    if !sub.is_empty() {
                        entry["subPath"] = json!(sub);
                    }
                    self.workspace_used = true;
                }
                MountSource::EmptyTmpfs => {
                    // An empty read-only folder over what must stay out of sight.
                    let hide = format!("{name}-hide-{i}");
                    self.list.push(
                        json!({"name": hide, "emptyDir": {"medium": "Memory", "sizeLimit": "4Ki"}}),
                    );
                    entry["name"] = json!(hide);
                }
            }
            mounts.push(entry);
        }
        Ok(mounts)
    }

    /// Where `host` is in the workspace (`""` for the workspace itself).
    fn workspace_sub_path(
        &self,
        plan: &ContainerPlan,
        host: &str,
    ) -> Result<String, ManifestError> {
        let outside = || ManifestError::HostMount {
            service: plan.service.clone(),
            host: host.to_string(),
        };
        let root = self.workspace_root.as_deref().ok_or_else(outside)?;
        let relative = Path::new(host).strip_prefix(root).map_err(|_| outside())?;
        Ok(relative.display().to_string())
    }

    /// The volumes, the workspace's among them when any container mounts it.
    fn into_list(mut self) -> Value {
        if self.workspace_used {
            let workspace = match &self.export.workspace {
                Workspace::EmptyDir(size) => {
                    json!({"name": "workspace", "emptyDir": {"sizeLimit": size}})
                }
                Workspace::Claim(claim) => {
                    json!({"name": "workspace", "persistentVolumeClaim": {"claimName": claim}})
                }
            };
            self.list.insert(0, workspace);
        }
        Value::Array(self.list)
    }
}

fn tmp_name(container: &str) -> String {
    format!("{container}-tmp")
}

/// A container's `/tmp`: memory, 256 MiB, as the tmpfs on Docker.
fn tmp_volume(container: &str) -> Value {
    json!({"name": tmp_name(container), "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}})
}
