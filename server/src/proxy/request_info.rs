//! The Kubernetes verb and resource of a request, derived from method, path and query the way the
//! API server's RequestInfo does, so the audit log says "list services" rather than "GET".

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, ... for resources; the lower-case method otherwise.
    pub verb: String,
    /// False for discovery and other non-resource paths (`/api`, `/version`, `/openapi/v2`).
    pub is_resource: bool,
    /// `core/v1`, `apps/v1` (Teleport's `resource_api_group` spelling).
    pub api_group: String,
    pub namespace: String,
    /// The resource with its subresource, e.g. `pods`, `pods/exec`, `pods/log`.
    pub resource: String,
    pub name: String,
}

/// Subresources that open a stream into a container: `create` whatever the method, because a
/// WebSocket exec is a GET and RBAC `get` on pods/exec must not mean "may run commands"
/// (kubernetes#78741, fixed in 1.35).
const CONNECT_SUBRESOURCES: [&str; 3] = ["exec", "attach", "portforward"];

pub fn request_info(method: &str, path: &str, query: Option<&str>) -> RequestInfo {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let non_resource = || RequestInfo {
        verb: method.to_ascii_lowercase(),
        is_resource: false,
        ..RequestInfo::default()
    };
    let (api_group, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => (format!("core/{version}"), rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            (format!("{group}/{version}"), rest)
        }
        _ => return non_resource(),
    };
    let mut rest = rest;
    let mut watch = false;
    if rest.first() == Some(&"watch") {
        watch = true;
        rest = &rest[1..];
    }
    let mut namespace = "";
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        namespace = rest[1];
        rest = &rest[2..];
    }
    let (resource, name, subresource) = match rest {
        [] => return non_resource(),
        ["namespaces", ns] => ("namespaces", *ns, ""),
        [resource] => (*resource, "", ""),
        [resource, name] => (*resource, *name, ""),
        [resource, name, subresource, ..] => (*resource, *name, *subresource),
    };
    // The first `watch` value, decoded and case-folded, as the API server reads it.
    let watch = watch
        || query.is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(key, _)| key == "watch")
                .is_some_and(|(_, value)| {
                    value.eq_ignore_ascii_case("true") || value.as_ref() == "1"
                })
        });
    let verb = if CONNECT_SUBRESOURCES.contains(&subresource) {
        "create"
    } else {
        match (method, name.is_empty()) {
            ("GET" | "HEAD", _) if watch => "watch",
            ("GET" | "HEAD", false) => "get",
            ("GET" | "HEAD", true) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", false) => "delete",
            ("DELETE", true) => "deletecollection",
            _ => "unknown",
        }
    };
    let resource = if subresource.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}/{subresource}")
    };
    let namespace = if namespace.is_empty() && resource == "namespaces" {
        name
    } else {
        namespace
    };
    RequestInfo {
        verb: verb.to_owned(),
        is_resource: true,
        api_group,
        namespace: namespace.to_owned(),
        resource,
        name: name.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(method: &str, path: &str, query: Option<&str>) -> (String, String, String, String) {
        let i = request_info(method, path, query);
        (i.verb, i.resource, i.namespace, i.name)
    }

    fn row(verb: &str, resource: &str, ns: &str, name: &str) -> (String, String, String, String) {
        (verb.into(), resource.into(), ns.into(), name.into())
    }

    #[test]
    fn paths_map_to_kubernetes_verbs_and_resources() {
        let cases = [
            (
                ("GET", "/api/v1/namespaces/default/pods", None),
                row("list", "pods", "default", ""),
            ),
            (
                ("GET", "/api/v1/namespaces/default/pods/web", None),
                row("get", "pods", "default", "web"),
            ),
            (
                (
                    "GET",
                    "/api/v1/namespaces/default/pods",
                    Some("watch=true&resourceVersion=1"),
                ),
                row("watch", "pods", "default", ""),
            ),
            (
                ("GET", "/api/v1/watch/namespaces/default/pods", None),
                row("watch", "pods", "default", ""),
            ),
            (
                (
                    "GET",
                    "/api/v1/namespaces/default/services",
                    Some("limit=500"),
                ),
                row("list", "services", "default", ""),
            ),
            (
                ("POST", "/apis/apps/v1/namespaces/shop/deployments", None),
                row("create", "deployments", "shop", ""),
            ),
            (
                (
                    "PATCH",
                    "/apis/apps/v1/namespaces/shop/deployments/web",
                    None,
                ),
                row("patch", "deployments", "shop", "web"),
            ),
            (
                ("DELETE", "/api/v1/namespaces/default/pods", None),
                row("deletecollection", "pods", "default", ""),
            ),
            (
                (
                    "GET",
                    "/api/v1/namespaces/default/pods/web/log",
                    Some("follow=true"),
                ),
                row("get", "pods/log", "default", "web"),
            ),
            (("GET", "/api/v1/nodes", None), row("list", "nodes", "", "")),
            (
                ("GET", "/api/v1/namespaces/kube-system", None),
                row("get", "namespaces", "kube-system", "kube-system"),
            ),
            (
                ("GET", "/api/v1/namespaces", None),
                row("list", "namespaces", "", ""),
            ),
        ];
        for ((method, path, query), expected) in cases {
            assert_eq!(info(method, path, query), expected, "{method} {path}");
        }
    }

    #[test]
    fn exec_attach_and_portforward_are_create_even_over_a_websocket_get() {
        for path in [
            "/api/v1/namespaces/default/pods/web/exec",
            "/api/v1/namespaces/default/pods/web/attach",
            "/api/v1/namespaces/default/pods/web/portforward",
        ] {
            assert_eq!(request_info("GET", path, Some("command=sh")).verb, "create");
            assert_eq!(request_info("POST", path, None).verb, "create");
        }
    }

    #[test]
    fn an_encoded_or_capitalised_watch_is_still_a_watch() {
        for query in ["watch=%74rue", "watch=TRUE", "limit=1&watch=1"] {
            assert_eq!(
                request_info("GET", "/api/v1/pods", Some(query)).verb,
                "watch",
                "{query}"
            );
        }
        assert_eq!(
            request_info("GET", "/api/v1/pods", Some("watch=false")).verb,
            "list"
        );
    }

    #[test]
    fn discovery_and_other_non_resource_paths_are_not_resources() {
        for path in [
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps/v1",
            "/version",
            "/openapi/v2",
        ] {
            let i = request_info("GET", path, None);
            assert!(!i.is_resource, "{path}");
            assert_eq!(i.verb, "get");
        }
    }

    #[test]
    fn the_api_group_is_written_the_teleport_way() {
        assert_eq!(
            request_info("GET", "/api/v1/pods", None).api_group,
            "core/v1"
        );
        assert_eq!(
            request_info("GET", "/apis/rbac.authorization.k8s.io/v1/roles", None).api_group,
            "rbac.authorization.k8s.io/v1"
        );
    }
}
