//! `POST /Subscription` and `GET /Subscription/{id}`: how a referrer asks to be told
//! about Task changes (FHIR R4 rest-hook).
//!
//! Owns: the HTTP side of creating a Subscription (checks in `notify::prepare`,
//! base-R4 validation, 201 with `Location`), and reading one back (its `status`
//! and `error` say whether delivery works).
//! Must not: deliver notifications or match criteria.

use super::respond::{require_resource, resource_answer, store_failure, unprocessable};
use super::Intake;
use crate::http::{ApiRequest, ApiResponse};
use crate::notify;
use crate::outcome::{Issue, IssueType, OperationOutcome};
use crate::store::{CommitOutcome, ResourceWrite, WriteUnit};
use hyper::StatusCode;

pub(crate) async fn create(intake: &Intake, request: ApiRequest) -> ApiResponse {
    let body = match require_resource(&request, "Subscription") {
        Ok(body) => body.clone(),
        Err(answer) => return answer,
    };
    let prepared = match notify::prepare(body, request.principal.as_deref()) {
        Ok(s) => s,
        Err(err) => {
            let at = match &err {
                notify::SubscriptionError::Criteria(_) => "Subscription.criteria",
                notify::SubscriptionError::ChannelType(_) => "Subscription.channel.type",
                notify::SubscriptionError::Endpoint => "Subscription.channel.endpoint",
                notify::SubscriptionError::Payload(_) => "Subscription.channel.payload",
                notify::SubscriptionError::Header => "Subscription.channel.header",
                notify::SubscriptionError::NotASubscription => "resourceType",
            };
            return unprocessable(&OperationOutcome::from_issue(
                Issue::error(IssueType::NotSupported, err.to_string()).at(at),
            ));
        }
    };
    let found = intake.validator.validate(&prepared, None);
    if found.has_errors() {
        return unprocessable(&found);
    }
    let id = crate::store::new_id();
    let unit = WriteUnit {
        writes: vec![ResourceWrite {
            resource_type: "Subscription".into(),
            id: id.clone(),
            resource: prepared,
            if_match: None,
        }],
        ..Default::default()
    };
    match intake.store.commit(unit).await {
        Ok(CommitOutcome::Committed(stored)) => match stored.first() {
            Some(s) => {
                tracing::info!(subscription = %id, correlation_id = %request.correlation_id, "subscription created");
                resource_answer(&request, StatusCode::CREATED, s, "Subscription created")
            }
            None => ApiResponse::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "the store returned nothing",
            ),
        },
        Ok(CommitOutcome::Duplicate { .. }) => ApiResponse::error(
            StatusCode::CONFLICT,
            IssueType::Duplicate,
            "duplicate Subscription",
        ),
        Err(err) => store_failure(&err),
    }
}
