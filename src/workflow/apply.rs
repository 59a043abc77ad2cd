//! Applying one Task update: load, check, merge, validate, commit — with retries
//! when another writer got there first, and exactly-once by message id.

use super::change::{merge, owner_value, ChangeError};
use super::status::{Actor, Refusal, TaskStatus};
use super::{tenancy, NOTIFICATIONS_DESTINATION, TASK_UPDATE_MESSAGE_TYPE};
use crate::auth::{Principal, Role};
use crate::config::{IntakeConfig, NotifyConfig, TasksConfig};
use crate::intake::provider_message::{self, MessageContext};
use crate::intake::ReferralValidator;
use crate::notify::{self, NotificationContext};
use crate::outcome::{Issue, IssueType, OperationOutcome};
use crate::routing::{Provider, Router};
use crate::store::{
    instant_text, now_millis, CommitOutcome, IdempotencyClaim, NewOutboxMessage, ResourceWrite,
    Store, StoreError, StoredResource, WriteUnit,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Who sent an update, as far as the door it came through can tell.
#[derive(Debug, Clone)]
pub enum Caller {
    /// HTTP with the verified principal (`None` when auth is off).
    Http(Option<Arc<Principal>>),
    /// AMQP `task-updates` with routing key `provider.<id>`.
    Amqp { provider_id: String },
}

/// One proposed change to a Task.
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub task_id: String,
    /// A Task: full (PUT) or only the fields that change (AMQP).
    pub proposed: Value,
    /// The version the caller based the change on (`If-Match`, or `meta.versionId`
    /// on AMQP); a different current version refuses the update.
    pub expected_version: Option<i64>,
    pub caller: Caller,
    /// Exactly-once key (AMQP `message_id`, HTTP `X-Request-ID` when the client set it).
    pub message_id: Option<String>,
    pub correlation_id: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub base_url: String,
}

/// The result of an update that was not refused.
#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    Applied(Box<AppliedUpdate>),
    /// This message id was applied before; nothing changed now.
    Duplicate {
        task: String,
        version: i64,
    },
}

#[derive(Debug, Clone)]
pub struct AppliedUpdate {
    pub task: StoredResource,
    pub from: TaskStatus,
    pub to: TaskStatus,
    pub forwarded_to: Option<String>,
    pub notifications: usize,
}

/// Why an update was refused (or could not be applied now).
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("Task/{0} is not known")]
    NotFound(String),
    #[error("Task/{task} is at version {current}, not {expected}")]
    VersionConflict {
        task: String,
        expected: i64,
        current: i64,
    },
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Transition(#[from] Refusal),
    #[error("{0}")]
    Forbidden(String),
    #[error("the updated Task does not conform to {profile}")]
    Invalid {
        profile: String,
        outcome: OperationOutcome,
    },
    #[error("Task.owner names {0}, which is not a known provider")]
    UnknownProvider(String),
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
}

impl UpdateError {
    /// A temporary failure: retry later, do not dead-letter.
    pub fn is_transient(&self) -> bool {
        matches!(self, UpdateError::Store(e) if !matches!(e, StoreError::Corrupt(_)))
    }

    /// The HTTP status that answers this refusal.
    pub fn http_status(&self) -> hyper::StatusCode {
        use hyper::StatusCode as S;
        match self {
            UpdateError::NotFound(_) => S::NOT_FOUND,
            UpdateError::VersionConflict { .. } => S::PRECONDITION_FAILED,
            UpdateError::Change(ChangeError::Forbidden(_)) => S::UNPROCESSABLE_ENTITY,
            UpdateError::Change(ChangeError::IdMismatch { .. }) => S::BAD_REQUEST,
            UpdateError::Change(ChangeError::NotATask) => S::BAD_REQUEST,
            UpdateError::Change(_) => S::UNPROCESSABLE_ENTITY,
            UpdateError::Transition(_) => S::CONFLICT,
            UpdateError::Forbidden(_) => S::FORBIDDEN,
            UpdateError::Invalid { .. } => S::UNPROCESSABLE_ENTITY,
            UpdateError::UnknownProvider(_) => S::UNPROCESSABLE_ENTITY,
            UpdateError::Store(_) => S::SERVICE_UNAVAILABLE,
        }
    }

    /// The refusal as an OperationOutcome (the validator's issues for `Invalid`).
    pub fn outcome(&self) -> OperationOutcome {
        let (code, at) = match self {
            UpdateError::NotFound(_) => (IssueType::NotFound, None),
            UpdateError::VersionConflict { .. } => {
                (IssueType::Conflict, Some("Task.meta.versionId"))
            }
            UpdateError::Change(ChangeError::Forbidden(_)) => (IssueType::BusinessRule, None),
            UpdateError::Change(ChangeError::RejectWithoutReason) => {
                (IssueType::Required, Some("Task.statusReason"))
            }
            UpdateError::Change(ChangeError::UnknownStatus(_)) => {
                (IssueType::CodeInvalid, Some("Task.status"))
            }
            UpdateError::Change(ChangeError::IdMismatch { .. }) => {
                (IssueType::Invalid, Some("Task.id"))
            }
            UpdateError::Change(ChangeError::OwnerWithoutIdentifier)
            | UpdateError::Change(ChangeError::ForwardWithStatus) => {
                (IssueType::BusinessRule, Some("Task.owner"))
            }
            UpdateError::Change(_) => (IssueType::Invalid, None),
            UpdateError::Transition(_) => (IssueType::BusinessRule, Some("Task.status")),
            UpdateError::Forbidden(_) => (IssueType::Forbidden, None),
            UpdateError::UnknownProvider(_) => (IssueType::NotFound, Some("Task.owner")),
            UpdateError::Store(_) => (IssueType::Transient, None),
            UpdateError::Invalid { outcome, .. } => {
                let mut all = OperationOutcome::from_issue(Issue::error(
                    IssueType::Processing,
                    self.to_string(),
                ));
                all.extend(outcome.clone());
                return all;
            }
        };
        let mut issue = Issue::error(code, self.to_string());
        if let Some(path) = at {
            issue = issue.at(path);
        }
        if let Some(detail) = self.detail_code() {
            issue = issue.with_detail(detail);
        }
        OperationOutcome::from_issue(issue)
    }

    /// A short machine-readable reason (dead-letter header, outcome detail).
    pub fn detail_code(&self) -> Option<&'static str> {
        Some(match self {
            UpdateError::Transition(_) => "illegal-transition",
            UpdateError::Forbidden(_) => "not-owner",
            UpdateError::VersionConflict { .. } => "version-conflict",
            UpdateError::Invalid { .. } => "invalid-task",
            UpdateError::NotFound(_) => "unknown-task",
            _ => return None,
        })
    }
}

/// Applies Task updates; shared by the HTTP routes and the AMQP consumer.
pub struct Workflow {
    store: Store,
    router: Arc<Router>,
    validator: Arc<dyn ReferralValidator>,
    tasks: TasksConfig,
    notify: NotifyConfig,
    intake: IntakeConfig,
}

/// Retries when a concurrent writer moved the Task between our read and commit.
const CONCURRENT_RETRIES: usize = 5;

impl Workflow {
    pub fn new(
        store: Store,
        router: Arc<Router>,
        validator: Arc<dyn ReferralValidator>,
        tasks: TasksConfig,
        notify: NotifyConfig,
        intake: IntakeConfig,
    ) -> Workflow {
        Workflow {
            store,
            router,
            validator,
            tasks,
            notify,
            intake,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The profile every updated Task must conform to.
    pub fn task_profile(&self) -> &str {
        &self.tasks.task_profile
    }

    /// Apply one update. Refusals are `Err`; a repeated message id is `Duplicate`.
    pub async fn apply(&self, update: &TaskUpdate) -> Result<UpdateOutcome, UpdateError> {
        let key = update.message_id.as_ref().map(|m| {
            let who = match &update.caller {
                Caller::Amqp { provider_id } => format!("provider:{provider_id}"),
                Caller::Http(_) => "http".into(),
            };
            format!("Task.update|{who}|{m}")
        });
        if let Some(key) = &key {
            if let Some(refs) = self.store.idempotency_refs(key).await? {
                return Ok(duplicate(&refs, &update.task_id));
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_apply(update, key.as_deref()).await {
                Err(UpdateError::Store(StoreError::VersionConflict(_)))
                    if update.expected_version.is_none() && attempt < CONCURRENT_RETRIES =>
                {
                    continue
                }
                Err(UpdateError::Store(StoreError::VersionConflict(_))) => {
                    let current = self
                        .store
                        .read("Task", &update.task_id)
                        .await?
                        .map(|t| t.version_id)
                        .unwrap_or_default();
                    return Err(UpdateError::VersionConflict {
                        task: update.task_id.clone(),
                        expected: update.expected_version.unwrap_or_default(),
                        current,
                    });
                }
                other => return other,
            }
        }
    }

    async fn try_apply(
        &self,
        update: &TaskUpdate,
        key: Option<&str>,
    ) -> Result<UpdateOutcome, UpdateError> {
        let task_id = &update.task_id;
        let current = self
            .store
            .read("Task", task_id)
            .await?
            .ok_or_else(|| UpdateError::NotFound(task_id.clone()))?;
        let actor = self.authorise(&update.caller, &current.resource, task_id)?;
        if let Some(expected) = update.expected_version {
            if expected != current.version_id {
                return Err(UpdateError::VersionConflict {
                    task: task_id.clone(),
                    expected,
                    current: current.version_id,
                });
            }
        }
        let mut merged = merge(
            &current.resource,
            &update.proposed,
            task_id,
            &instant_text(now_millis()),
        )?;
        merged.from.check_transition(merged.to, actor)?;
        merged.check_complete()?;
        let new_provider = match &merged.forwarded_to {
            Some(value) => {
                let system = update
                    .proposed
                    .pointer("/owner/identifier/system")
                    .and_then(Value::as_str);
                let provider = self
                    .router
                    .provider_for_owner(system, value)
                    .cloned()
                    .ok_or_else(|| UpdateError::UnknownProvider(value.clone()))?;
                let mut tags = vec![tenancy::provider_tag(&provider.id)];
                tags.extend(
                    tenancy::requesting_organisation(&current.resource).map(tenancy::requester_tag),
                );
                tenancy::set_tags(&mut merged.task, &tags);
                Some(provider)
            }
            None => None,
        };
        let found = self
            .validator
            .validate(&merged.task, Some(&self.tasks.task_profile));
        if found.has_errors() {
            return Err(UpdateError::Invalid {
                profile: self.tasks.task_profile.clone(),
                outcome: found,
            });
        }

        let new_version = current.version_id + 1;
        let mut writes = vec![ResourceWrite {
            resource_type: "Task".into(),
            id: task_id.clone(),
            resource: merged.task.clone(),
            if_match: Some(current.version_id),
        }];
        let service_request = self.based_on(&current.resource).await?;
        let sr_status = match merged.to {
            TaskStatus::Completed if merged.from != merged.to => Some("completed"),
            TaskStatus::Cancelled if merged.from != merged.to => Some("revoked"),
            _ => None,
        };
        if let (Some(status), Some(sr)) = (sr_status, &service_request) {
            let mut resource = sr.resource.clone();
            resource["status"] = json!(status);
            writes.push(ResourceWrite {
                resource_type: "ServiceRequest".into(),
                id: sr.id.clone(),
                resource,
                if_match: Some(sr.version_id),
            });
        }

        let subscriptions = notify::active(&self.store).await?;
        let context = NotificationContext {
            correlation_id: Some(update.correlation_id.clone()),
            traceparent: update.traceparent.clone(),
            tracestate: update.tracestate.clone(),
        };
        let mut stamped_task = merged.task.clone();
        stamped_task["id"] = json!(task_id);
        let notifications = notify::notifications_for(
            &subscriptions,
            task_id,
            &stamped_task,
            new_version,
            &context,
        );
        let notification_count = notifications.len();

        let requester_queue = tenancy::requesting_organisation(&current.resource)
            .filter(|ods| {
                self.notify
                    .requester_queues
                    .iter()
                    .any(|q| q.eq_ignore_ascii_case(ods))
            })
            .map(str::to_string);
        let forward = match (&new_provider, &service_request) {
            (Some(provider), Some(sr)) => Some(self.forward_context(update, provider, sr).await?),
            _ => None,
        };
        let sr_for_message = service_request.clone();
        let task_profile = self.tasks.task_profile.clone();
        let correlation = update.correlation_id.clone();
        let (traceparent, tracestate) = (update.traceparent.clone(), update.tracestate.clone());
        let unit = WriteUnit {
            writes,
            idempotency: key
                .map(|k| IdempotencyClaim {
                    key: k.to_string(),
                    refs: json!({"task": format!("Task/{task_id}"), "version": new_version}),
                })
                .into_iter()
                .collect(),
            outbox: Vec::new(),
            outbox_from_stored: Some(Box::new(
                move |stored: &[StoredResource], _contents: &[String]| {
                    let mut rows = Vec::new();
                    let Some(task) = stored.first() else {
                        return rows;
                    };
                    if let Some(ods) = &requester_queue {
                        rows.push(NewOutboxMessage {
                            id: crate::store::new_id(),
                            destination: NOTIFICATIONS_DESTINATION.into(),
                            routing_key: super::requester_routing_key(ods),
                            message_type: TASK_UPDATE_MESSAGE_TYPE.into(),
                            content_type: "application/fhir+json".into(),
                            profile: Some(task_profile.clone()),
                            body: task.resource.to_string(),
                            correlation_id: Some(correlation.clone()),
                            traceparent: traceparent.clone(),
                            tracestate: tracestate.clone(),
                        });
                    }
                    if let (Some(ctx), Some(sr)) = (&forward, &sr_for_message) {
                        let sr = stored
                            .iter()
                            .find(|s| s.resource_type == "ServiceRequest")
                            .unwrap_or(sr);
                        rows.push(provider_message::outbox_row(
                            ctx,
                            &[sr.clone(), task.clone()],
                            &[],
                        ));
                    }
                    rows
                },
            )),
            notifications,
            search_rows: Vec::new(),
        };
        match self.store.commit(unit).await? {
            CommitOutcome::Duplicate { refs, .. } => Ok(duplicate(&refs, task_id)),
            CommitOutcome::Committed(mut stored) => {
                if stored.is_empty() {
                    return Err(StoreError::Corrupt("commit returned no Task".into()).into());
                }
                let task = stored.swap_remove(0);
                tracing::info!(task = %task_id, from = %merged.from, to = %merged.to, version = task.version_id,
                    notifications = notification_count, correlation_id = %update.correlation_id, "task updated");
                Ok(UpdateOutcome::Applied(Box::new(AppliedUpdate {
                    task,
                    from: merged.from,
                    to: merged.to,
                    forwarded_to: new_provider.map(|p| p.id),
                    notifications: notification_count,
                })))
            }
        }
    }

    /// Who may change this Task, and as which actor.
    fn authorise(
        &self,
        caller: &Caller,
        task: &Value,
        task_id: &str,
    ) -> Result<Actor, UpdateError> {
        let owner = tenancy::owning_provider(task);
        match caller {
            Caller::Amqp { provider_id } => {
                if owner == Some(provider_id.as_str()) {
                    Ok(Actor::Provider)
                } else {
                    Err(UpdateError::Forbidden(format!(
                        "provider '{provider_id}' does not own Task/{task_id}"
                    )))
                }
            }
            Caller::Http(None) => Ok(Actor::Unauthenticated),
            Caller::Http(Some(p)) => {
                let actor = match p.role {
                    Role::Provider if owner.is_some() && owner == p.provider_id.as_deref() => {
                        Some(Actor::Provider)
                    }
                    Role::Requester
                        if tenancy::requesting_organisation(task)
                            .is_some_and(|o| o.eq_ignore_ascii_case(&p.organisation)) =>
                    {
                        Some(Actor::Requester)
                    }
                    _ => None,
                };
                // Cross-tenant: answer as if the Task did not exist.
                actor.ok_or_else(|| UpdateError::NotFound(task_id.to_string()))
            }
        }
    }

    /// The ServiceRequest a Task is based on.
    async fn based_on(&self, task: &Value) -> Result<Option<StoredResource>, UpdateError> {
        let reference = task
            .pointer("/basedOn/0/reference")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(id) = reference.strip_prefix("ServiceRequest/") else {
            return Ok(None);
        };
        Ok(self.store.read("ServiceRequest", id).await?)
    }

    /// The message context for re-sending a referral to the provider it is forwarded to.
    async fn forward_context(
        &self,
        update: &TaskUpdate,
        provider: &Provider,
        sr: &StoredResource,
    ) -> Result<MessageContext, UpdateError> {
        let mut fetched = HashMap::new();
        for pointer in ["/subject/reference", "/requester/reference"] {
            if let Some((rtype, id)) = sr
                .resource
                .pointer(pointer)
                .and_then(Value::as_str)
                .and_then(|r| r.split_once('/'))
            {
                if let Some(found) = self.store.read(rtype, id).await? {
                    fetched.insert(format!("{rtype}/{id}"), found.resource);
                }
            }
        }
        tracing::info!(provider = %provider.id, previous_owner = owner_value(&sr.resource).unwrap_or(""), "referral forwarded");
        Ok(MessageContext {
            message_id: crate::store::new_id(),
            provider: provider.clone(),
            source_endpoint: self.intake.source_endpoint.clone(),
            base_url: update.base_url.clone(),
            profile: sr
                .resource
                .pointer("/meta/profile/0")
                .and_then(Value::as_str)
                .unwrap_or(&self.intake.referral_profile)
                .to_string(),
            correlation_id: update.correlation_id.clone(),
            traceparent: update.traceparent.clone(),
            tracestate: update.tracestate.clone(),
            fetched,
        })
    }
}

fn duplicate(refs: &Value, task_id: &str) -> UpdateOutcome {
    UpdateOutcome::Duplicate {
        task: refs
            .get("task")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("Task/{task_id}")),
        version: refs
            .get("version")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
    }
}
