//! A function's own changes: deploy (and update), scale, remove. Each runs with the write lock held
//! (taken by `apply.rs`), validates everything before anything is stored, persists (fsynced) second,
//! and switches the runtime last.

use std::time::SystemTime;

use wasmgate_openfaas::digest::Digest;
use wasmgate_openfaas::names::FunctionRef;
use wasmgate_openfaas::types::{FunctionDeployment, FunctionRecord};

use super::change::{Component, Origin, PutMode, check_mode, function_of};
use super::error::Error;
use super::registry::Functions;
use super::replication::Replicated;
use super::spec;
use crate::storage::state::StateError;

impl Functions {
    /// What every deploy checks before reading a component: the namespace, the secrets it lists,
    /// its settings against this gateway's maximums.
    pub(super) fn check_deployment(
        &self,
        function: &FunctionRef,
        deployment: &FunctionDeployment,
    ) -> Result<(), Error> {
        if !self.namespace_exists(&function.namespace) {
            return Err(Error::invalid(format!(
                "namespace {} does not exist",
                function.namespace
            )));
        }
        let known_secrets = self.state.list_secrets(&function.namespace)?;
        for secret in deployment.settings.secrets.iter().flatten() {
            if !known_secrets.contains(secret) {
                return Err(Error::invalid(format!(
                    "secret {secret:?} not found in namespace {}",
                    function.namespace
                )));
            }
        }
        spec::check_settings(deployment, self.runtime.config())
    }

    /// Deploys or updates a function: checks it, reads and compiles its component, builds its
    /// secrets directory, writes its record, and installs it in the runtime.
    pub(super) async fn deploy_locked(
        &self,
        mut deployment: FunctionDeployment,
        mode: PutMode,
        component: Component,
        origin: Origin,
    ) -> Result<Replicated, Error> {
        if super::spin::is_spin(&deployment) {
            return self.deploy_spin_locked(deployment, mode, origin).await;
        }
        let function = function_of(&deployment)?;
        deployment.namespace = Some(function.namespace.clone());
        let key = function.key();
        let existing = self.read_records().get(&key).cloned();
        check_mode(&function, mode, existing.is_some())?;
        self.check_deployment(&function, &deployment)?;
        let replicas = spec::replicas(&deployment, existing.as_ref().map(|r| r.replicas))?;

        let (wasm, digest) = match component {
            // Another node read the image; its component is here by digest.
            Component::Stored(digest) => {
                let bytes = self.state.read_artifact(&digest)?.ok_or_else(|| {
                    Error::internal(
                        "applying a remote deploy",
                        format!("artifact {digest} is missing"),
                    )
                })?;
                (bytes, digest)
            }
            Component::Fetched { bytes, digest } => (bytes, digest),
            Component::Image => {
                let (bytes, digest) = self.resolve_image(&deployment.image).await?;
                let digest = digest.unwrap_or_else(|| Digest::of(&bytes));
                (bytes, digest)
            }
        };
        let prepared = self
            .runtime
            .prepare(
                &key,
                wasm.clone(),
                self.source(digest.clone()),
                self.spec(&function, &deployment),
                replicas > 0,
            )
            .await
            .map_err(Error::compiling)?;
        let world = prepared.world();
        spec::check_world(&function, &deployment, world)?;
        tracing::info!(function = %function, %world, "component validated");

        // The function's secrets directory is derived data: assemble it before persisting, so a
        // failure here leaves no record behind.
        self.build_secrets_dir(&function, &deployment)?;

        // Valid: persist, then switch.
        let record = FunctionRecord {
            deployment,
            digest: digest.to_string(),
            created_at: existing.map(|r| r.created_at).unwrap_or_else(|| {
                wasmgate_openfaas::time::format_rfc3339(SystemTime::now(), false)
            }),
            replicas,
            world: Some(world.as_str().to_string()),
        };
        let state = self.state.clone();
        let stored = record.clone();
        let (namespace, name) = (function.namespace.clone(), function.name.clone());
        tokio::task::spawn_blocking(move || -> Result<(), StateError> {
            if !state.has_artifact(&digest) {
                state.put_artifact(&wasm)?;
            }
            state.put_function(&namespace, &name, &stored)
        })
        .await
        .map_err(|e| Error::internal("storing the function", e))??;
        self.runtime.install(prepared);
        self.metrics.set_replicas(&key, replicas);
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
        self.write_records().insert(key, record.clone());
        tracing::info!(function = %function, ?mode, ?origin, "function deployed");
        Ok(Replicated::FunctionPut(record))
    }

    /// Sets replicas: 0 unloads the compiled code, more loads it (in the background).
    pub(super) fn scale_locked(
        &self,
        function: &FunctionRef,
        replicas: u64,
    ) -> Result<Replicated, Error> {
        let key = function.key();
        let Some(mut record) = self.read_records().get(&key).cloned() else {
            return Err(Error::NotFound(format!("function {function}")));
        };
        record.replicas = replicas;
        self.state
            .put_function(&function.namespace, &function.name, &record)?;
        self.write_records().insert(key.clone(), record.clone());
        self.metrics.set_replicas(&key, replicas);
        if replicas == 0 {
            self.runtime.unload(&key);
        } else {
            let runtime = self.runtime.clone();
            tokio::spawn(async move {
                if let Err(error) = runtime.warm(&key).await {
                    tracing::warn!(function = %key, %error, "could not load after scaling up");
                }
            });
        }
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
        Ok(Replicated::FunctionScaled(record))
    }

    /// Removes a function: its record, its runtime entry, its secrets directory, its metrics.
    pub(super) fn remove_locked(
        &self,
        function: &FunctionRef,
        origin: Origin,
    ) -> Result<Replicated, Error> {
        let key = function.key();
        if !self.read_records().contains_key(&key) {
            return Err(Error::NotFound(format!("function {function}")));
        }
        self.state
            .delete_function(&function.namespace, &function.name)?;
        self.runtime.remove(&key);
        self.remove_secrets_dir(function);
        self.write_records().remove(&key);
        self.metrics.forget_function(&key);
        self.metrics
            .set_functions_loaded(self.runtime.loaded_count() as u64);
        tracing::info!(function = %function, ?origin, "function removed");
        Ok(Replicated::FunctionRemoved(function.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_needs_a_new_function_and_an_update_an_existing_one() {
        let hello = FunctionRef::new("hello", None).expect("a valid name");
        assert_eq!(check_mode(&hello, PutMode::Create, false), Ok(()));
        assert_eq!(
            check_mode(&hello, PutMode::Create, true),
            // A bad request, not a conflict: as the API has always answered it.
            Err(Error::InvalidInput(
                "function hello.openfaas-fn already exists; update it with PUT".into()
            ))
        );
        assert_eq!(check_mode(&hello, PutMode::Update, true), Ok(()));
        assert_eq!(
            check_mode(&hello, PutMode::Update, false).map_err(|e| e.to_string()),
            Err("function hello.openfaas-fn not found".into())
        );
        assert_eq!(check_mode(&hello, PutMode::Upsert, false), Ok(()));
        assert_eq!(check_mode(&hello, PutMode::Upsert, true), Ok(()));
    }

    #[test]
    fn a_deployment_without_a_namespace_is_in_the_default_one() {
        let mut deployment = FunctionDeployment {
            service: "hello".into(),
            ..FunctionDeployment::default()
        };
        assert_eq!(
            function_of(&deployment).map(|f| f.key()),
            Ok("hello.openfaas-fn".into())
        );
        deployment.namespace = Some(String::new());
        assert_eq!(
            function_of(&deployment).map(|f| f.key()),
            Ok("hello.openfaas-fn".into())
        );
        deployment.namespace = Some("team".into());
        assert_eq!(
            function_of(&deployment).map(|f| f.key()),
            Ok("hello.team".into())
        );
        deployment.service = "no/slash".into();
        assert!(matches!(
            function_of(&deployment),
            Err(Error::InvalidInput(m)) if m.starts_with("invalid function name \"no/slash\"")
        ));
    }
}
