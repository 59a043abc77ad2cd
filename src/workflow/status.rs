//! The FHIR Task state machine as spbridge enforces it for a referral.
//!
//! Owns: `TaskStatus`, who may move a Task from one status to another, and the
//! wording of a refused transition.
//! Must not: read or write resources.

use std::fmt;

/// The statuses a referral's Task takes (FHIR R4 `TaskStatus`, the subset spbridge uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Requested,
    Received,
    Accepted,
    Rejected,
    InProgress,
    OnHold,
    Completed,
    Failed,
    Cancelled,
}

/// Who asks for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The provider that owns the Task.
    Provider,
    /// The organisation that made the referral.
    Requester,
    /// Authentication is off (local development): either role's moves are allowed.
    Unauthenticated,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Requested,
        TaskStatus::Received,
        TaskStatus::Accepted,
        TaskStatus::Rejected,
        TaskStatus::InProgress,
        TaskStatus::OnHold,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Requested => "requested",
            TaskStatus::Received => "received",
            TaskStatus::Accepted => "accepted",
            TaskStatus::Rejected => "rejected",
            TaskStatus::InProgress => "in-progress",
            TaskStatus::OnHold => "on-hold",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(code: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.as_str() == code)
    }

    /// No further change is possible.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Rejected
                | TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Cancelled
        )
    }

    /// Moves a provider may make.
    fn provider_may_move_to(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Requested, Received)
                | (Requested, Accepted)
                | (Requested, Rejected)
                | (Received, Accepted)
                | (Received, Rejected)
                | (Accepted, InProgress)
                | (Accepted, OnHold)
                | (Accepted, Failed)
                | (InProgress, Completed)
                | (InProgress, OnHold)
                | (InProgress, Failed)
                | (OnHold, InProgress)
                | (OnHold, Accepted)
                | (OnHold, Failed)
        )
    }

    /// Whether `actor` may move a Task from `self` to `to`. Staying in the same
    /// non-terminal status (a note, a business status) is always allowed.
    pub fn check_transition(self, to: TaskStatus, actor: Actor) -> Result<(), Refusal> {
        if self.is_terminal() {
            return Err(Refusal::Terminal { from: self, to });
        }
        if self == to {
            return Ok(());
        }
        let provider_ok = self.provider_may_move_to(to);
        let requester_ok = to == TaskStatus::Cancelled;
        let allowed = match actor {
            Actor::Provider => provider_ok,
            Actor::Requester => requester_ok,
            Actor::Unauthenticated => provider_ok || requester_ok,
        };
        if allowed {
            Ok(())
        } else if to == TaskStatus::Cancelled {
            Err(Refusal::RequesterOnly { from: self, to })
        } else if actor == Actor::Requester && provider_ok {
            Err(Refusal::ProviderOnly { from: self, to })
        } else {
            Err(Refusal::NotAllowed { from: self, to })
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition is refused; the text names the transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Task status cannot change from '{from}' to '{to}': '{from}' is final")]
    Terminal { from: TaskStatus, to: TaskStatus },
    #[error("Task status cannot change from '{from}' to '{to}': not a permitted transition")]
    NotAllowed { from: TaskStatus, to: TaskStatus },
    #[error("Task status '{from}' to '{to}' is for the referrer only (cancel the referral)")]
    RequesterOnly { from: TaskStatus, to: TaskStatus },
    #[error("Task status '{from}' to '{to}' is for the provider only")]
    ProviderOnly { from: TaskStatus, to: TaskStatus },
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    #[test]
    fn the_happy_path_is_allowed_for_the_provider() {
        let path = [Requested, Received, Accepted, InProgress, Completed];
        for pair in path.windows(2) {
            assert_eq!(pair[0].check_transition(pair[1], Actor::Provider), Ok(()));
        }
    }

    #[test]
    fn skipping_ahead_and_leaving_final_states_is_refused() {
        assert!(Requested
            .check_transition(Completed, Actor::Provider)
            .is_err());
        for end in [Completed, Rejected, Failed, Cancelled] {
            let err = end
                .check_transition(InProgress, Actor::Provider)
                .unwrap_err();
            assert!(err.to_string().contains("is final"), "{err}");
        }
    }

    #[test]
    fn only_the_requester_cancels() {
        assert!(matches!(
            Accepted.check_transition(Cancelled, Actor::Provider),
            Err(Refusal::RequesterOnly { .. })
        ));
        assert_eq!(
            Accepted.check_transition(Cancelled, Actor::Requester),
            Ok(())
        );
        assert!(Accepted
            .check_transition(InProgress, Actor::Requester)
            .is_err());
    }

    #[test]
    fn codes_round_trip() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskStatus::parse("draft"), None);
    }
}
