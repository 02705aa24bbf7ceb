//! `SubjectAccessReview`: the API server's own authorizer answers whether an identity may do
//! something, aggregated roles, webhooks and all, which re-deriving RBAC from objects cannot match.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::rbac::Subject;
use crate::Result;

/// One request to ask about: `verb` on `resource` (may be `pods/log`) in `group`, in `namespace`
/// or, with `None`, in every namespace.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
}

impl std::fmt::Display for Access<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        match self.namespace {
            Some(ns) => write!(f, "{} {}{group} in {ns}", self.verb, self.resource),
            None => write!(
                f,
                "{} {}{group} in all namespaces",
                self.verb, self.resource
            ),
        }
    }
}

/// Whether the identity the subject stands for is allowed the access.
pub async fn allowed(client: &kube::Client, subject: &Subject, access: Access<'_>) -> Result<bool> {
    let (user, groups) = subject.as_review_identity();
    allowed_for(client, user, groups, access).await
}

pub async fn allowed_for(
    client: &kube::Client,
    user: Option<String>,
    groups: Vec<String>,
    access: Access<'_>,
) -> Result<bool> {
    let (resource, subresource) = match access.resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub.to_owned())),
        None => (access.resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user,
            groups: Some(groups),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(access.verb.to_owned()),
                group: Some(access.group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                namespace: access.namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|status| status.allowed))
}
