//! The `--backend kubernetes` side of `run`, `gc` and `doctor` (experimental; `sandbox/k8s/` does the
//! work). Without the `kubernetes` feature each says that this build has no such backend.

use crate::cli::BackendArgs;
use crate::exit::Exit;

/// What a build without the `kubernetes` feature says to `--backend kubernetes`.
#[cfg(not(feature = "kubernetes"))]
const NOT_BUILT: &str = "this perstack-sandbox was built without the `kubernetes` feature\n  hint: use a release build (it has the feature), or `cargo build --features kubernetes`";

/// `gc --backend kubernetes`: removes the runs whose Lease expired.
#[cfg(feature = "kubernetes")]
pub(crate) async fn gc(backend: &BackendArgs, dry_run: bool) -> Exit {
    let api = match connect(backend).await {
        Ok(api) => api,
        Err(e) => return failed(&e),
    };
    let sweep = match crate::sandbox::k8s::gc::sweep(&api, dry_run).await {
        Ok(sweep) => sweep,
        Err(e) => return failed(&e),
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    for run in &sweep.stale {
        println!(
            "{verb} run {} in namespace {}: its Lease (held by {}) expired",
            run.name,
            api.namespace(),
            run.holder
        );
    }
    for failure in &sweep.failures {
        eprintln!("warning: {failure}");
    }
    if sweep.stale.is_empty() {
        println!("nothing to remove ({} run(s) still renewed)", sweep.live);
    }
    Exit::Success
}

/// `doctor --backend kubernetes`: RBAC, Pod Security, NetworkPolicy.
#[cfg(feature = "kubernetes")]
pub(crate) async fn doctor(backend: &BackendArgs) -> Exit {
    use crate::sandbox::k8s::doctor::{self, Finding};
    println!(
        "perstack-sandbox {} doctor --backend kubernetes (experimental)",
        env!("CARGO_PKG_VERSION")
    );
    let api = match connect(backend).await {
        Ok(api) => api,
        Err(e) => return failed(&e),
    };
    let rbac = doctor::rbac(&api)
        .await
        .unwrap_or_else(|e| Finding::Fail(e.to_string(), "see the hint above".into()));
    let findings = [
        ("permissions", rbac),
        ("pod security", doctor::pod_security(&api).await),
        ("networkpolicy", doctor::network_policy()),
    ];
    let mut failed_any = false;
    for (what, finding) in findings {
        match finding {
            Finding::Ok(detail) => println!("  ✔ {what:<16} {detail}"),
            Finding::Fail(detail, fix) => {
                failed_any = true;
                println!("  ✘ {what:<16} {detail}\n    fix: {fix}");
            }
            Finding::Unknown(detail) => println!("  ? {what:<16} {detail}"),
        }
    }
    if failed_any {
        Exit::RunFailed
    } else {
        println!("ready, as far as the API can tell.");
        Exit::Success
    }
}

/// The backend of `run --backend kubernetes`, connected.
#[cfg(feature = "kubernetes")]
pub(crate) async fn backend(
    backend: &BackendArgs,
) -> Result<crate::sandbox::k8s::backend::KubernetesBackend, super::run::RunError> {
    let api = connect(backend)
        .await
        .map_err(crate::sandbox::engine::run::RunError::from)?;
    Ok(crate::sandbox::k8s::backend::KubernetesBackend::new(api))
}

#[cfg(feature = "kubernetes")]
async fn connect(
    backend: &BackendArgs,
) -> Result<crate::sandbox::k8s::client::KubeApi, crate::sandbox::k8s::client::KubeError> {
    let target = crate::sandbox::k8s::client::KubeTarget {
        kubeconfig: backend.kubeconfig.clone(),
        context: backend.context.clone(),
        namespace: backend.namespace.clone(),
    };
    crate::sandbox::k8s::client::KubeApi::connect(&target).await
}

#[cfg(feature = "kubernetes")]
fn failed(error: &crate::sandbox::k8s::client::KubeError) -> Exit {
    eprintln!("error: {error}");
    Exit::RunFailed
}

/// `run --backend kubernetes` in a build without the backend.
#[cfg(not(feature = "kubernetes"))]
pub(crate) async fn backend(
    _backend: &BackendArgs,
) -> Result<crate::sandbox::engine::docker::DockerClient, super::run::RunError> {
    Err(super::run::RunError::NotBuilt(NOT_BUILT))
}

/// `gc --backend kubernetes` in a build without the backend.
#[cfg(not(feature = "kubernetes"))]
pub(crate) async fn gc(_backend: &BackendArgs, _dry_run: bool) -> Exit {
    eprintln!("error: {NOT_BUILT}");
    Exit::Usage
}

/// `doctor --backend kubernetes` in a build without the backend.
#[cfg(not(feature = "kubernetes"))]
pub(crate) async fn doctor(_backend: &BackendArgs) -> Exit {
    eprintln!("error: {NOT_BUILT}");
    Exit::Usage
}
