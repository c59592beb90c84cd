//! Namespaces: their rules (a name OpenFaaS accepts; a create needs a new name and an update an
//! existing one; the default namespace, and a namespace that still has functions, are never deleted)
//! and the changes that follow them.

use wasmgate_openfaas::names::{DEFAULT_NAMESPACE, FunctionRef};
use wasmgate_openfaas::types::Namespace;

use super::change::PutMode;
use super::error::Error;
use super::registry::Functions;
use super::replication::Replicated;

/// A namespace's name is what OpenFaaS accepts as one (a DNS label); empty is the default namespace.
pub(super) fn check_name(name: &str) -> Result<(), Error> {
    FunctionRef::new("x", Some(name))?;
    Ok(())
}

/// Whether a put of the namespace `name` may go ahead, given whether it `exists`.
fn check_put(name: &str, mode: PutMode, exists: bool) -> Result<(), Error> {
    let create = match mode {
        PutMode::Create => true,
        PutMode::Update => false,
        PutMode::Upsert => !exists,
    };
    if create && exists {
        return Err(Error::Conflict(format!("namespace {name}")));
    }
    if !create && !exists {
        return Err(Error::NotFound(format!("namespace {name}")));
    }
    Ok(())
}

/// Whether the namespace `name` may be deleted, given whether it `exists` and `has_functions`.
fn check_delete(name: &str, exists: bool, has_functions: bool) -> Result<(), Error> {
    if !exists {
        return Err(Error::NotFound(format!("namespace {name}")));
    }
    if name == DEFAULT_NAMESPACE {
        return Err(Error::invalid(format!(
            "the default namespace {DEFAULT_NAMESPACE} cannot be deleted"
        )));
    }
    if has_functions {
        return Err(Error::invalid(format!(
            "namespace {name} still has functions; remove them first"
        )));
    }
    Ok(())
}

impl Functions {
    /// Creates or updates a namespace (its name checked already). Called with the write lock held.
    pub(super) fn put_namespace_locked(
        &self,
        namespace: Namespace,
        mode: PutMode,
    ) -> Result<Replicated, Error> {
        check_put(
            &namespace.name,
            mode,
            self.namespace_exists(&namespace.name),
        )?;
        self.state.put_namespace(&namespace.name, &namespace)?;
        self.write_namespaces()
            .insert(namespace.name.clone(), namespace.clone());
        Ok(Replicated::NamespacePut(namespace))
    }

    /// Deletes an empty namespace. Called with the write lock held.
    pub(super) fn delete_namespace_locked(&self, name: &str) -> Result<Replicated, Error> {
        let has_functions = self
            .read_records()
            .values()
            .any(|r| r.deployment.namespace.as_deref() == Some(name));
        check_delete(name, self.namespace_exists(name), has_functions)?;
        self.state.delete_namespace(name)?;
        self.write_namespaces().remove(name);
        Ok(Replicated::NamespaceRemoved(name.to_string()))
    }
}
