//! A policy's Landlock ruleset: filesystem grants, TCP ports and scopes, best effort per ABI.
//!
//! The ruleset asks for every right of the ABI we test against ([`TARGET_ABI`]); an older kernel
//! enforces what it knows and the outcome says exactly which parts held. Rules are opened while
//! the ruleset is prepared (before the uid switch, so errors name the path) and enforced by
//! [`Prepared::restrict_self`], which must run after `no_new_privs` is set.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use serde::{Deserialize, Serialize};

use super::policy::{FsAccess, Policy, TcpConnect};
use super::probe::LandlockFeature;

/// The newest ABI whose rights we request and test. ABI 7 adds only audit logging to 6.
pub(crate) const TARGET_ABI: ABI = ABI::V7;

/// Why Landlock could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("Landlock: {0}")]
pub struct LandlockError(#[from] landlock::RulesetError);

/// A path named by the rules that grants nothing, because it is not there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPath {
    /// The path.
    pub path: PathBuf,
    /// Why it could not be opened.
    pub error: String,
}

/// What Landlock enforced for one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockOutcome {
    /// The kernel's ABI (0: none).
    pub abi: u32,
    /// The features the kernel enforced for this ruleset.
    pub enforced: Vec<LandlockFeature>,
    /// Requested features the kernel lacks.
    pub missing: Vec<LandlockFeature>,
    /// Grants skipped because their path does not exist.
    pub skipped: Vec<SkippedPath>,
}

/// A ruleset with its rules, ready to enforce.
pub(crate) struct Prepared {
    ruleset: RulesetCreated,
    requested: Vec<LandlockFeature>,
    skipped: Vec<SkippedPath>,
}

/// The rights each kind of grant gives, within what the ruleset handles.
fn rights(access: FsAccess) -> BitFlags<AccessFs> {
    let all = AccessFs::from_all(TARGET_ABI);
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    match access {
        FsAccess::ReadOnly => read,
        FsAccess::ReadWrite => all & !AccessFs::Execute,
        FsAccess::Executable => read | AccessFs::Execute,
    }
}

/// The features this policy asks of Landlock: all of them, scopes only when it scopes anything.
fn requested(policy: &Policy) -> Vec<LandlockFeature> {
    let scoped = policy.scopes.abstract_unix_sockets || policy.scopes.signals;
    LandlockFeature::ALL
        .into_iter()
        .filter(|&f| scoped || f != LandlockFeature::Scopes)
        .collect()
}

impl Prepared {
    /// Creates the ruleset and adds the policy's rules. Opens each granted path.
    pub(crate) fn new(policy: &Policy) -> Result<Prepared, LandlockError> {
        let mut net = BitFlags::<AccessNet>::from(AccessNet::BindTcp);
        if policy.network.connect != TcpConnect::Any {
            net |= AccessNet::ConnectTcp;
        }
        let mut scopes = BitFlags::<Scope>::empty();
        if policy.scopes.abstract_unix_sockets {
            scopes |= Scope::AbstractUnixSocket;
        }
        if policy.scopes.signals {
            scopes |= Scope::Signal;
        }
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(TARGET_ABI))?
            .handle_access(net)?;
        if !scopes.is_empty() {
            ruleset = ruleset.scope(scopes)?;
        }
        let mut created = ruleset.create()?;
        let mut skipped = Vec::new();
        for (path, access) in policy.grants() {
            match path_rule(path, access) {
                Ok(rule) => created = created.add_rule(rule)?,
                Err(error) => skipped.push(SkippedPath {
                    path: path.to_path_buf(),
                    error,
                }),
            }
        }
        if let TcpConnect::Port(port) = policy.network.connect {
            created = created.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
        }
        for &port in &policy.network.bind {
            created = created.add_rule(NetPort::new(port, AccessNet::BindTcp))?;
        }
        Ok(Prepared {
            ruleset: created,
            requested: requested(policy),
            skipped,
        })
    }

    /// Enforces the ruleset on this thread and what it executes. `no_new_privs` must be set.
    pub(crate) fn restrict_self(self, kernel_abi: u32) -> Result<LandlockOutcome, LandlockError> {
        let status = self.ruleset.restrict_self()?;
        let (enforced, missing) = if status.ruleset == RulesetStatus::NotEnforced {
            (Vec::new(), self.requested)
        } else {
            self.requested
                .into_iter()
                .partition(|f| f.since() <= kernel_abi)
        };
        Ok(LandlockOutcome {
            abi: kernel_abi,
            enforced,
            missing,
            skipped: self.skipped,
        })
    }
}

/// One path rule; a file (not a folder) gets only the rights that apply to files.
fn path_rule(path: &Path, access: FsAccess) -> Result<PathBeneath<PathFd>, String> {
    let fd = PathFd::new(path).map_err(|e| e.to_string())?;
    let is_dir = std::fs::metadata(path)
        .map(|m| m.is_dir())
        .map_err(|e| e.to_string())?;
    let mut rights = rights(access);
    if !is_dir {
        rights &= AccessFs::from_file(TARGET_ABI);
    }
    Ok(PathBeneath::new(fd, rights))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_grants_no_write_and_read_write_grants_no_execute() {
        let ro = rights(FsAccess::ReadOnly);
        assert!(ro.contains(AccessFs::ReadFile | AccessFs::ReadDir));
        assert!(!ro.intersects(AccessFs::from_write(TARGET_ABI) | AccessFs::Execute));

        let rw = rights(FsAccess::ReadWrite);
        assert!(rw.contains(AccessFs::WriteFile | AccessFs::Truncate | AccessFs::MakeReg));
        assert!(rw.contains(AccessFs::Refer | AccessFs::RemoveFile | AccessFs::IoctlDev));
        assert!(!rw.contains(AccessFs::Execute));

        let x = rights(FsAccess::Executable);
        assert!(x.contains(AccessFs::Execute | AccessFs::ReadFile));
        assert!(!x.intersects(AccessFs::from_write(TARGET_ABI)));
    }

    #[test]
    fn every_policy_asks_for_filesystem_tcp_and_scopes() {
        let policy = Policy::deny_all("x");
        assert_eq!(requested(&policy), LandlockFeature::ALL.to_vec());
        let mut unscoped = Policy::deny_all("x");
        unscoped.scopes.signals = false;
        unscoped.scopes.abstract_unix_sockets = false;
        assert!(!requested(&unscoped).contains(&LandlockFeature::Scopes));
    }
}
