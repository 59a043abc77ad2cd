//! `PackageDir` configuration from the environment. Alone in its test binary because it sets
//! process environment variables.

use std::path::Path;

use spbridge::packages::{PackageDir, RegistryConfig};

#[test]
fn flag_then_env_then_user_cache() {
    std::env::set_var(PackageDir::ENV, "/from/env");
    assert_eq!(
        PackageDir::from_env_or("/default").path(),
        Path::new("/from/env")
    );
    assert_eq!(PackageDir::configured(None).path(), Path::new("/from/env"));
    assert_eq!(
        PackageDir::configured(Some(Path::new("/from/flag"))).path(),
        Path::new("/from/flag")
    );
    std::env::set_var(PackageDir::ENV, "");
    assert_eq!(
        PackageDir::from_env_or("/default").path(),
        Path::new("/default")
    );
    std::env::remove_var(PackageDir::ENV);
    assert_eq!(
        PackageDir::configured(None).path(),
        PackageDir::user_cache()
    );
    std::env::set_var("HOME", "/home/someone");
    assert_eq!(
        PackageDir::user_cache(),
        Path::new("/home/someone/.fhir/packages")
    );

    std::env::set_var(
        RegistryConfig::ENV,
        "http://127.0.0.1:1/a, http://127.0.0.1:2/b",
    );
    assert_eq!(
        RegistryConfig::from_env_or_default().bases,
        vec!["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"]
    );
    std::env::remove_var(RegistryConfig::ENV);
    assert_eq!(
        RegistryConfig::from_env_or_default().bases,
        vec![
            "https://packages.fhir.org",
            "https://packages2.fhir.org/packages"
        ]
    );
}
