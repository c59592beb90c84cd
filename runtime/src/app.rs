//! Functions made of parts: a Spin app is one function whose components are its parts, and a
//! [`Router`] the embedder gives decides which part serves each request.
//!
//! - The part `PART` of the function `NAME` is an ordinary function of the runtime named
//!   `NAME/PART` ([`part_name`]; no request from outside can name it, as a function's name has no
//!   `/`). Its parts share one log, `NAME`'s.
//! - [`Runtime::invoke`] of `NAME` asks the router for the part ([`Router::route`]) and runs it;
//!   a function calling `http://NAME/...` goes the same way.
//! - A request a part sends is offered to the router first ([`Router::route_call`]): it may be for
//!   another part of the same function (Spin's `*.spin.internal` calls and self-requests), served
//!   in process like any call between functions.
//! - `contains`, `remove`, `unload`, `warm`, `precompile`, `is_loaded`, `idle_for`, `world` and
//!   `logs` of `NAME` apply to the function as a whole.

use std::sync::Arc;

use crate::logs::FunctionLogs;
use crate::router::{Router, part_name};
use crate::{Entry, Error, FunctionSpec, Prepared, Runtime, WasmSource};

/// A function made of parts.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) router: Arc<dyn Router>,
    /// Its parts' names (without the function's).
    pub(crate) parts: Vec<String>,
    pub(crate) logs: Arc<FunctionLogs>,
}

impl Runtime {
    /// The log the parts of the function `name` share: its current one, or a new one for a
    /// function not yet installed. Hand it to each [`Runtime::prepare_part`].
    pub fn app_logs(&self, name: &str) -> Arc<FunctionLogs> {
        if let Some(app) = self.app(name) {
            return app.logs.clone();
        }
        self.read()
            .get(name)
            .map(|e| e.logs.clone())
            .unwrap_or_else(|| Arc::new(FunctionLogs::new(name, self.inner.config.log_lines)))
    }

    /// [`Runtime::prepare`] for the part `part` of the function `name`, logging to `logs`.
    #[allow(
        clippy::too_many_arguments,
        reason = "prepare's arguments and the part's"
    )]
    pub async fn prepare_part(
        &self,
        name: &str,
        part: &str,
        logs: &Arc<FunctionLogs>,
        wasm: Vec<u8>,
        source: WasmSource,
        spec: FunctionSpec,
        keep_loaded: bool,
    ) -> Result<Prepared, Error> {
        self.prepare_logged(
            &part_name(name, part),
            logs.clone(),
            wasm,
            source,
            spec,
            keep_loaded,
        )
        .await
    }

    /// Makes the function `name` the prepared parts routed by `router`, replacing whatever had that
    /// name (a plain function, or the parts of an earlier version). Requests running finish on
    /// what they started with.
    pub fn install_app(&self, name: &str, parts: Vec<(String, Prepared)>, router: Arc<dyn Router>) {
        let logs = self.app_logs(name);
        let names: Vec<String> = parts.iter().map(|(part, _)| part.clone()).collect();
        for (_, prepared) in parts {
            self.install(prepared);
        }
        self.switch_app(name, names, router, logs);
    }

    /// [`Runtime::register`] for a function made of parts: nothing is compiled until a request
    /// needs a part.
    pub fn register_app(
        &self,
        name: &str,
        parts: Vec<(String, WasmSource, FunctionSpec)>,
        router: Arc<dyn Router>,
    ) {
        let logs = self.app_logs(name);
        let mut names = Vec::new();
        for (part, source, spec) in parts {
            let key = part_name(name, &part);
            let entry = self.entry(&key, source, Arc::new(spec), logs.clone());
            self.write().insert(key, Arc::new(entry));
            names.push(part);
        }
        self.switch_app(name, names, router, logs);
    }

    /// Records the app, then drops what no longer belongs to it: a plain function of its name, the
    /// parts its earlier version had and this one has not.
    fn switch_app(
        &self,
        name: &str,
        parts: Vec<String>,
        router: Arc<dyn Router>,
        logs: Arc<FunctionLogs>,
    ) {
        let old = self.apps_write().insert(
            name.to_string(),
            Arc::new(App {
                router,
                parts: parts.clone(),
                logs,
            }),
        );
        let mut gone: Vec<String> = old
            .map(|old| {
                old.parts
                    .iter()
                    .filter(|part| !parts.contains(part))
                    .map(|part| part_name(name, part))
                    .collect()
            })
            .unwrap_or_default();
        gone.push(name.to_string());
        let mut functions = self.write();
        for key in gone {
            if let Some(entry) = functions.remove(&key) {
                self.inner.loaded.invalidate(&entry.id);
            }
        }
    }

    /// Whether `name` is a function made of parts.
    pub fn is_made_of_parts(&self, name: &str) -> bool {
        self.app(name).is_some()
    }

    /// The function made of parts called `name`, if it is one.
    pub(crate) fn app(&self, name: &str) -> Option<Arc<App>> {
        self.inner
            .apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Removes the function made of parts `name` and its parts; whether it was one.
    pub(crate) fn remove_app(&self, name: &str) -> bool {
        let Some(app) = self.apps_write().remove(name) else {
            return false;
        };
        let mut functions = self.write();
        for part in &app.parts {
            if let Some(entry) = functions.remove(&part_name(name, part)) {
                self.inner.loaded.invalidate(&entry.id);
            }
        }
        true
    }

    /// The entries `name` stands for: itself, or the parts of a function made of them.
    pub(crate) fn entries_of(&self, name: &str) -> Vec<Arc<Entry>> {
        // Never both locks at once: `remove_app` takes the apps', then the functions'.
        if let Some(entry) = self.read().get(name).cloned() {
            return vec![entry];
        }
        let Some(app) = self.app(name) else {
            return Vec::new();
        };
        let functions = self.read();
        app.parts
            .iter()
            .filter_map(|part| functions.get(&part_name(name, part)).cloned())
            .collect()
    }

    fn apps_write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, std::collections::HashMap<String, Arc<App>>> {
        self.inner.apps.write().unwrap_or_else(|p| p.into_inner())
    }
}
