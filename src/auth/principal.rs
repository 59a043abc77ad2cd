//! The authenticated caller and its SMART v2 system scopes.

/// What a client is registered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A GP system or link-worker service that sends referrals.
    Requester,
    /// A VCS provider that receives referrals and updates their Tasks.
    Provider,
    /// Reads the audit trail.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Provider => "provider",
            Role::Auditor => "auditor",
        }
    }
}

/// A SMART v2 interaction letter: create, read, update, delete, search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }
}

/// The caller behind a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub client_id: String,
    /// ODS code of the organisation the client acts for.
    pub organisation: String,
    pub role: Role,
    /// For providers: the provider id (queue and routing-key name) the organisation maps to.
    pub provider_id: Option<String>,
    /// Granted SMART v2 scopes, e.g. `system/ServiceRequest.c`, `system/Task.rs`.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether a granted scope covers `interaction` on `resource_type`
    /// (`system/Task.rs`, `system/*.rs`, v1 `system/Task.read`/`.write`/`.*` also understood).
    pub fn allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.scopes
            .iter()
            .any(|scope| scope_allows(scope, resource_type, interaction))
    }
}

fn scope_allows(scope: &str, resource_type: &str, interaction: Interaction) -> bool {
    let Some(rest) = scope.strip_prefix("system/") else {
        return false;
    };
    let Some((resource, perms)) = rest.split_once('.') else {
        return false;
    };
    if resource != "*" && resource != resource_type {
        return false;
    }
    // Strip SMART v2 query parameters (`system/Task.rs?owner=…`) — not granted finer here.
    let perms = perms.split('?').next().unwrap_or("");
    match perms {
        "*" => true,
        "read" => matches!(interaction, Interaction::Read | Interaction::Search),
        "write" => matches!(
            interaction,
            Interaction::Create | Interaction::Update | Interaction::Delete
        ),
        letters => letters.contains(interaction.letter()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scopes: &[&str]) -> Principal {
        Principal {
            client_id: "c".into(),
            organisation: "A81001".into(),
            role: Role::Requester,
            provider_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn v2_letters_grant_only_their_interactions() {
        let p = principal(&["system/Task.rs"]);
        assert!(p.allows("Task", Interaction::Read));
        assert!(p.allows("Task", Interaction::Search));
        assert!(!p.allows("Task", Interaction::Update));
        assert!(!p.allows("ServiceRequest", Interaction::Read));
    }

    #[test]
    fn wildcard_resource_and_v1_scopes() {
        let p = principal(&["system/*.rs", "system/Subscription.write"]);
        assert!(p.allows("ServiceRequest", Interaction::Read));
        assert!(p.allows("Subscription", Interaction::Create));
        assert!(!p.allows("Task", Interaction::Update));
        assert!(!principal(&["user/Task.rs"]).allows("Task", Interaction::Read));
    }
}
