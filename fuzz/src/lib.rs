//! What each fuzz target does with one input, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/*`, nightly, `scripts/fuzz`) and by the stable regression test
//! `tests/fuzz_regressions.rs`, which replays every input kept under `fuzz/regressions/`.
//!
//! Each function must return normally for every input: a panic, an abort, a stack overflow
//! or a hang is a finding. None of them asserts what the answer is; the other tests do that.

use serde_json::Value;
use spbridge::auth::tokens::TokenRequest;
use spbridge::auth::AuthService;
use spbridge::definitions::{Definitions, DefinitionsConfig};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository root (fixtures, profiles and dev keys are read from it).
fn repo() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Built as `fuzz/` (the fuzz crate) or included from the main crate's tests.
    if here.join("fuzz").is_dir() {
        here.to_path_buf()
    } else {
        here.join("..")
    }
}

/// R4 + UK Core + spbridge's profiles, loaded once per process (`SPBRIDGE_FHIR_PACKAGES`,
/// else `../shared/fhir-packages` next to the repository).
pub fn definitions() -> &'static Definitions {
    static DEFS: OnceLock<Definitions> = OnceLock::new();
    DEFS.get_or_init(|| {
        let packages = std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("../shared/fhir-packages"));
        let config = DefinitionsConfig::standard(packages, Some(repo().join("profiles")));
        let defs = Definitions::load(&config).expect("FHIR definitions load");
        defs.precompile_standard_profiles()
            .expect("profiles compile");
        defs
    })
}

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("fixtures").join(path)).expect("fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// The FHIR JSON entry: parse the bytes as intake does, then validate the resource (with the
/// profiles it claims, else the default for its type) and render the OperationOutcome.
pub fn fhir_json(data: &[u8]) {
    let Ok(resource) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let outcome = definitions().validator.validate(&resource, None);
    let _ = serde_json::to_vec(&outcome.to_json());
}

/// The FHIRPath engine: compile the input as an expression and evaluate it against the
/// fixture ServiceRequest.
pub fn fhirpath(data: &[u8]) {
    static RESOURCE: OnceLock<Value> = OnceLock::new();
    let Ok(expression) = std::str::from_utf8(data) else {
        return;
    };
    let resource = RESOURCE.get_or_init(|| fixture("referral/servicerequest.json"));
    let _ = spbridge::fhirpath::evaluate_to_json(expression, resource, &definitions().model);
}

/// The AMQP task-update handler's pure part: the routing key (the input up to the first
/// newline) and body read into a proposed Task, merged into the fixture Task as the
/// consumer does, and the status move checked against the state machine.
pub fn task_update(data: &[u8]) {
    static CURRENT: OnceLock<Value> = OnceLock::new();
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let routing_key = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or(&[]);
    let Ok((_provider, proposed)) = spbridge::broker::read_task_update(&routing_key, body) else {
        return;
    };
    let current = CURRENT.get_or_init(|| fixture("referral/task.json"));
    let Ok(merged) = spbridge::workflow::merge(current, &proposed, "fuzz", "2026-12-02T00:00:00Z")
    else {
        return;
    };
    for actor in [
        spbridge::workflow::Actor::Provider,
        spbridge::workflow::Actor::Requester,
    ] {
        let _ = merged.from.check_transition(merged.to, actor);
    }
    let _ = merged.check_complete();
}

/// The token endpoint: the input as a `client_assertion` (and as a bearer token) against
/// the development security configuration, with the replay cache in a throwaway SQLite
/// store.
pub fn token_assertion(data: &[u8]) {
    struct Endpoint {
        runtime: tokio::runtime::Runtime,
        auth: AuthService,
        _dir: tempfile::TempDir,
    }
    static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();
    let Ok(assertion) = std::str::from_utf8(data) else {
        return;
    };
    let endpoint = ENDPOINT.get_or_init(|| {
        let root = repo();
        std::env::set_current_dir(&root).expect("repository root");
        let config =
            spbridge::config::Config::load(&root.join("dev-keys/spbridge.dev-security.toml"))
                .expect("dev security config");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store_config = config.store.clone();
        store_config.url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = runtime
            .block_on(spbridge::store::Store::connect(&store_config))
            .expect("store");
        let auth = AuthService::from_config(&config.auth, &config.http.base_url, store)
            .expect("auth service");
        Endpoint {
            runtime,
            auth,
            _dir: dir,
        }
    });
    let request = TokenRequest {
        grant_type: Some("client_credentials".into()),
        client_assertion_type: Some(
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ),
        client_assertion: Some(assertion.to_string()),
        scope: Some("system/Task.rs".into()),
    };
    endpoint.runtime.block_on(async {
        if let Some(issuer) = &endpoint.auth.issuer {
            let _ = issuer.issue(&request).await;
        }
        let _ = endpoint.auth.verifier.verify(assertion).await;
    });
}
