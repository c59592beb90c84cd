//! Secrets: the name rule, their changes (stored through the state directory, then every function
//! that lists the secret refreshed), and each function's own secrets directory,
//! `<state>/run/secrets/<namespace>/<name>/`, which holds exactly the secrets it lists, owner-only,
//! and which the runtime mounts read-only at `/var/openfaas/secrets`.

use std::path::PathBuf;

use cap_std::fs::{DirBuilder, DirBuilderExt, OpenOptions, OpenOptionsExt};
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::FunctionDeployment;

use super::change::SecretChange;
use super::error::Error;
use super::registry::Functions;
use super::replication::Replicated;
use crate::storage::state::StateError;

/// A secret's name is one file name: not empty, no `/`, no `..`.
pub(super) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return Err(Error::invalid(format!("invalid secret name {name:?}")));
    }
    Ok(())
}

/// Where a function's secrets directory is, inside `<state>/run`.
fn secrets_rel(function: &FunctionRef) -> PathBuf {
    PathBuf::from("secrets")
        .join(&function.namespace)
        .join(&function.name)
}

/// Why a function's secrets folder could not be assembled.
fn secrets_failed(error: std::io::Error) -> Error {
    const CONTEXT: &str = "preparing the function's secrets";
    if super::error::is_no_space(&error) {
        Error::NoSpace(format!("{CONTEXT}: {error}"))
    } else {
        Error::internal(CONTEXT, error)
    }
}

impl Functions {
    /// Makes `change` to a secret (its name checked already), then rebuilds the secrets directory
    /// and the `wasi:config` values of every function that lists it. Called with the write lock held.
    pub(super) fn change_secret_locked(
        &self,
        namespace: &str,
        name: &str,
        change: SecretChange,
    ) -> Result<Replicated, Error> {
        if !self.namespace_exists(namespace) {
            return Err(Error::invalid(format!(
                "namespace {namespace} does not exist"
            )));
        }
        let result = match &change {
            SecretChange::Create(value) => self.state.create_secret(namespace, name, value),
            SecretChange::Update(value) => self.state.update_secret(namespace, name, value),
            SecretChange::Delete => self.state.delete_secret(namespace, name),
        };
        let subject = || format!("secret {name} in namespace {namespace}");
        match result {
            Ok(()) => {}
            Err(StateError::Exists(_)) => return Err(Error::Conflict(subject())),
            Err(StateError::NotFound(_)) => return Err(Error::NotFound(subject())),
            Err(other) => return Err(other.into()),
        }
        let users: Vec<(FunctionRef, FunctionDeployment)> = self
            .read_records()
            .values()
            .filter(|r| r.deployment.namespace.as_deref() == Some(namespace))
            .filter(|r| {
                r.deployment
                    .settings
                    .secrets
                    .iter()
                    .flatten()
                    .any(|s| s == name)
                    || super::spin::variable_secrets(&r.deployment)
                        .iter()
                        .any(|s| s == name)
            })
            .filter_map(|r| {
                FunctionRef::new(&r.deployment.service, Some(namespace))
                    .ok()
                    .map(|f| (f, r.deployment.clone()))
            })
            .collect();
        for (function, deployment) in users {
            self.build_secrets_dir(&function, &deployment)?;
            if super::spin::is_spin(&deployment) {
                // Its variables may read the secret.
                if let Err(error) = self.respecify_spin(&function, &deployment) {
                    tracing::warn!(function = %function, %error, "could not refresh the Spin app's variables");
                }
                continue;
            }
            // Its `wasi:config` values include the secret's value.
            let spec = self.spec(&function, &deployment);
            if let Err(error) = self.runtime.respecify(&function.key(), spec) {
                tracing::warn!(function = %function, %error, "could not refresh the function's configuration");
            }
        }
        let value = match change {
            SecretChange::Create(value) | SecretChange::Update(value) => Some(value),
            SecretChange::Delete => None,
        };
        Ok(Replicated::SecretChanged {
            namespace: namespace.to_string(),
            name: name.to_string(),
            value,
        })
    }

    /// Assembles `run/secrets/<ns>/<fn>/` with exactly the secrets the function lists, owner-only.
    /// It is built beside (`<fn>.next`) and swapped in whole, so a failure (a full disk) leaves the
    /// function's current secrets as they were.
    pub(super) fn build_secrets_dir(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> Result<(), Error> {
        let rel = secrets_rel(function);
        let secrets: Vec<&String> = deployment.settings.secrets.iter().flatten().collect();
        if secrets.is_empty() {
            let _ = self.run.remove_dir_all(&rel);
            return Ok(());
        }
        // A function's name has no dot, so no other function's folder is called this.
        let next = rel.with_extension("next");
        let _ = self.run.remove_dir_all(&next);
        let built = self
            .fill_secrets_dir(function, &next, &secrets)
            .and_then(|()| {
                let _ = self.run.remove_dir_all(&rel);
                self.run
                    .rename(&next, &self.run, &rel)
                    .map_err(secrets_failed)
            });
        if built.is_err() {
            let _ = self.run.remove_dir_all(&next);
        }
        built
    }

    fn fill_secrets_dir(
        &self,
        function: &FunctionRef,
        rel: &std::path::Path,
        secrets: &[&String],
    ) -> Result<(), Error> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        self.run
            .create_dir_with(rel, &builder)
            .map_err(secrets_failed)?;
        let dir = self.run.open_dir(rel).map_err(secrets_failed)?;
        for secret in secrets {
            let value = self
                .state
                .read_secret(&function.namespace, secret)?
                .unwrap_or_default();
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true).mode(0o600);
            let mut file = dir.open_with(secret, &options).map_err(secrets_failed)?;
            std::io::Write::write_all(&mut file, &value).map_err(secrets_failed)?;
        }
        Ok(())
    }

    /// Removes a function's secrets directory (it was removed).
    pub(super) fn remove_secrets_dir(&self, function: &FunctionRef) {
        let _ = self.run.remove_dir_all(secrets_rel(function));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_name_is_one_file_name() {
        for good in ["token", "api-key", "a.b", "with space", ".hidden"] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
        for bad in ["", "a/b", "/", "..", "a..b", "../etc"] {
            assert_eq!(
                check_name(bad),
                Err(Error::InvalidInput(format!("invalid secret name {bad:?}"))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn each_function_has_a_folder_of_its_own() {
        let function = FunctionRef::new("hello", Some("team")).expect("a valid name");
        assert_eq!(secrets_rel(&function), PathBuf::from("secrets/team/hello"));
    }
}
