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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_name_is_a_dns_label() {
        for good in ["openfaas-fn", "team-1", "a", ""] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
        for bad in ["Team", "-a", "a-", "a.b", "a_b", "a/b"] {
            let error = check_name(bad).expect_err(bad);
            assert_eq!(
                error,
                Error::InvalidInput(format!(
                    "invalid namespace {bad:?}: use lowercase letters, digits and '-', starting and \
                     ending with a letter or digit"
                ))
            );
        }
    }

    #[test]
    fn a_put_creates_updates_or_either() {
        let conflict = Err(Error::Conflict("namespace team".into()));
        let missing = Err(Error::NotFound("namespace team".into()));
        let cases = [
            (PutMode::Create, false, Ok(())),
            (PutMode::Create, true, conflict),
            (PutMode::Update, false, missing),
            (PutMode::Update, true, Ok(())),
            (PutMode::Upsert, false, Ok(())),
            (PutMode::Upsert, true, Ok(())),
        ];
        for (mode, exists, expected) in cases {
            assert_eq!(
                check_put("team", mode, exists),
                expected,
                "{mode:?} {exists}"
            );
        }
        assert_eq!(
            check_put("team", PutMode::Create, true)
                .expect_err("a conflict")
                .to_string(),
            "namespace team already exists"
        );
        assert_eq!(
            check_put("team", PutMode::Update, false)
                .expect_err("missing")
                .to_string(),
            "namespace team not found"
        );
    }

    #[test]
    fn only_an_empty_namespace_other_than_the_default_is_deleted() {
        assert_eq!(check_delete("team", true, false), Ok(()));
        assert_eq!(
            check_delete("team", false, false).map_err(|e| e.to_string()),
            Err("namespace team not found".into())
        );
        assert_eq!(
            check_delete(DEFAULT_NAMESPACE, true, false).map_err(|e| e.to_string()),
            Err("the default namespace openfaas-fn cannot be deleted".into())
        );
        assert_eq!(
            check_delete("team", true, true).map_err(|e| e.to_string()),
            Err("namespace team still has functions; remove them first".into())
        );
        // Missing comes first, then the default, then the functions left in it.
        assert!(matches!(
            check_delete(DEFAULT_NAMESPACE, false, true),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            check_delete(DEFAULT_NAMESPACE, true, true),
            Err(Error::InvalidInput(m)) if m.contains("default")
        ));
    }
}
