//! NetworkPolicy semantics: which connections between pods the policies of a cluster allow.
//!
//! The rules follow the Kubernetes documentation ("Network Policies" concept page and the
//! `networking.k8s.io/v1` API reference): each direction is judged on its own; a pod that no
//! policy selects for a direction is open in that direction; a selected pod accepts the union of
//! its policies' rules; a connection needs both the source's egress and the destination's ingress.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use crate::inputs::objects::KubeObject;
use crate::model::Location;
use crate::{Error, Result};

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    fn parse(value: Option<&Value>, field: &str) -> std::result::Result<Self, String> {
        let text = match value {
            None | Some(Value::Null) => return Ok(Protocol::Tcp),
            Some(Value::String(text)) => text.as_str(),
            Some(other) => return Err(format!("{field}: {other} is not a protocol name")),
        };
        match text {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            // The API server compares exactly: `tcp` is "Unsupported value", the object refused.
            other if ["TCP", "UDP", "SCTP"].contains(&other.to_ascii_uppercase().as_str()) => {
                Err(format!(
                    "{field}: {other:?} is refused by the API server (Unsupported value; protocol names \
                     are upper case: TCP, UDP or SCTP)"
                ))
            }
            other => Err(format!(
                "{field}: unknown protocol {other:?} (TCP, UDP or SCTP)"
            )),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A label selector: `matchLabels` and `matchExpressions`, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Labels,
    expressions: Vec<Expression>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expression {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    fn parse(value: &Value, field: &str) -> std::result::Result<Self, String> {
        let mut selector = Selector::default();
        if value.is_null() {
            return Ok(selector);
        }
        if !value.is_object() {
            return Err(format!("{field}: a label selector must be a mapping"));
        }
        if let Some(labels) = value.get("matchLabels").filter(|v| !v.is_null()) {
            let map = labels
                .as_object()
                .ok_or_else(|| format!("{field}.matchLabels: must be a mapping"))?;
            for (key, value) in map {
                let value = value
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| scalar_text(value))
                    .ok_or_else(|| format!("{field}.matchLabels.{key}: must be a string"))?;
                selector.labels.insert(key.clone(), value);
            }
        }
        if let Some(expressions) = value.get("matchExpressions").filter(|v| !v.is_null()) {
            let list = expressions
                .as_array()
                .ok_or_else(|| format!("{field}.matchExpressions: must be a list"))?;
            for (index, expression) in list.iter().enumerate() {
                let at = format!("{field}.matchExpressions[{index}]");
                let key = expression
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{at}.key: missing"))?
                    .to_owned();
                let values: Vec<String> = expression
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|values| values.iter().filter_map(scalar_text).collect())
                    .unwrap_or_default();
                let operator = expression.get("operator").and_then(Value::as_str);
                selector.expressions.push(match operator {
                    Some("In") if !values.is_empty() => Expression::In(key, values),
                    Some("NotIn") if !values.is_empty() => Expression::NotIn(key, values),
                    Some("In" | "NotIn") => {
                        return Err(format!("{at}.values: In and NotIn need at least one value"));
                    }
                    Some("Exists") => Expression::Exists(key),
                    Some("DoesNotExist") => Expression::DoesNotExist(key),
                    Some(other) => {
                        return Err(format!(
                            "{at}.operator: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                        ));
                    }
                    None => return Err(format!("{at}.operator: missing")),
                });
            }
        }
        Ok(selector)
    }

    /// `{}` (or an absent selector where the API treats it as empty) selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.expressions.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.expressions.iter().all(|expression| match expression {
                Expression::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
                Expression::NotIn(key, values) => {
                    labels.get(key).is_none_or(|v| !values.contains(v))
                }
                Expression::Exists(key) => labels.contains_key(key),
                Expression::DoesNotExist(key) => !labels.contains_key(key),
            })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut parts: Vec<String> = self
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        for expression in &self.expressions {
            parts.push(match expression {
                Expression::In(key, values) => format!("{key} in ({})", values.join(",")),
                Expression::NotIn(key, values) => format!("{key} notin ({})", values.join(",")),
                Expression::Exists(key) => key.clone(),
                Expression::DoesNotExist(key) => format!("!{key}"),
            });
        }
        f.write_str(&parts.join(","))
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// An IP network, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    address: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = text.trim().split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { address, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_equal(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_equal(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_equal(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let mut bits = usize::from(prefix);
    for (x, y) in a.iter().zip(b) {
        if bits == 0 {
            return true;
        }
        let take = bits.min(8);
        let mask = u8::MAX << (8 - take);
        if x & mask != y & mask {
            return false;
        }
        bits -= take;
    }
    true
}

/// Who a rule admits (ingress `from`) or reaches (egress `to`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Peer {
    /// `namespaceSelector` and/or `podSelector` in one peer: both must match (AND).
    Pods {
        namespaces: Option<Selector>,
        pods: Option<Selector>,
    },
    IpBlock {
        cidr: Cidr,
        except: Vec<Cidr>,
    },
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortRule {
    protocol: Protocol,
    port: Option<PortRef>,
    end_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// `None`: the rule has no `from`/`to` (or an empty one) and admits every peer.
    peers: Option<Vec<Peer>>,
    /// Empty: every port and protocol.
    ports: Vec<PortRule>,
}

/// A NetworkPolicy, parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    pub ingress_isolates: bool,
    pub egress_isolates: bool,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl Policy {
    /// `namespace/name`, as the matrix names policies.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn isolates(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.ingress_isolates,
            Direction::Egress => self.egress_isolates,
        }
    }

    pub fn selects(&self, pod: &Pod, direction: Direction) -> bool {
        self.isolates(direction)
            && pod.namespace == self.namespace
            && self.pod_selector.matches(&pod.labels)
    }

    /// Rules that admit any peer on any port: a selected pod is as open as an unselected one.
    pub fn allows_everything(&self, direction: Direction) -> bool {
        let rules = match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        };
        rules.iter().any(|rule| {
            rule.ports.is_empty()
                && rule.peers.as_ref().is_none_or(|peers| {
                    peers.iter().any(|peer| {
                        matches!(peer, Peer::IpBlock { cidr, except } if cidr.prefix == 0 && except.is_empty())
                    })
                })
        })
    }

    /// Parses a NetworkPolicy object; an error names the object and the field.
    pub fn from_object(object: &KubeObject, namespace: &str) -> Result<Self> {
        let location = object.finding_location();
        let invalid = |message: String| {
            let place = if location.file.is_empty() {
                object.id()
            } else {
                format!("{}:{} ({})", location.file, location.line, object.id())
            };
            Error::invalid(place, message)
        };
        let spec = object.value.get("spec").unwrap_or(&Value::Null);
        let pod_selector = Selector::parse(
            spec.get("podSelector").unwrap_or(&Value::Null),
            "spec.podSelector",
        )
        .map_err(invalid)?;
        let ingress = parse_rules(spec, "ingress", "from").map_err(invalid)?;
        let egress = parse_rules(spec, "egress", "to").map_err(invalid)?;
        let (ingress_isolates, egress_isolates) = match spec.get("policyTypes") {
            Some(Value::Array(types)) if !types.is_empty() => {
                let mut ingress = false;
                let mut egress = false;
                for (index, kind) in types.iter().enumerate() {
                    match kind.as_str() {
                        Some("Ingress") => ingress = true,
                        Some("Egress") => egress = true,
                        _ => {
                            return Err(invalid(format!(
                                "spec.policyTypes[{index}]: must be Ingress or Egress, got {kind}"
                            )));
                        }
                    }
                }
                (ingress, egress)
            }
            // The API's default: Ingress always, Egress only when egress rules exist.
            _ => (true, !egress.is_empty()),
        };
        Ok(Self {
            namespace: namespace.to_owned(),
            name: object.name.clone(),
            pod_selector,
            ingress_isolates,
            egress_isolates,
            ingress,
            egress,
            location,
        })
    }
}

fn parse_rules(
    spec: &Value,
    field: &str,
    peers_field: &str,
) -> std::result::Result<Vec<Rule>, String> {
    let Some(list) = spec.get(field).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| format!("spec.{field}: must be a list"))?;
    let mut rules = Vec::new();
    for (index, rule) in list.iter().enumerate() {
        let at = format!("spec.{field}[{index}]");
        let peers = match rule.get(peers_field).filter(|v| !v.is_null()) {
            None => None,
            Some(Value::Array(peers)) if peers.is_empty() => None,
            Some(Value::Array(peers)) => Some(
                peers
                    .iter()
                    .enumerate()
                    .map(|(i, peer)| parse_peer(peer, &format!("{at}.{peers_field}[{i}]")))
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(format!("{at}.{peers_field}: must be a list")),
        };
        let ports = match rule.get("ports").filter(|v| !v.is_null()) {
            None => Vec::new(),
            Some(Value::Array(ports)) => ports
                .iter()
                .enumerate()
                .map(|(i, port)| parse_port(port, &format!("{at}.ports[{i}]")))
                .collect::<std::result::Result<Vec<_>, _>>()?,
            Some(_) => return Err(format!("{at}.ports: must be a list")),
        };
        rules.push(Rule { peers, ports });
    }
    Ok(rules)
}

fn parse_peer(peer: &Value, at: &str) -> std::result::Result<Peer, String> {
    if let Some(block) = peer.get("ipBlock").filter(|v| !v.is_null()) {
        if peer.get("podSelector").is_some() || peer.get("namespaceSelector").is_some() {
            return Err(format!(
                "{at}: ipBlock cannot be combined with podSelector or namespaceSelector"
            ));
        }
        let cidr_text = block
            .get("cidr")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}.ipBlock.cidr: missing"))?;
        let cidr = Cidr::parse(cidr_text)
            .ok_or_else(|| format!("{at}.ipBlock.cidr: {cidr_text:?} is not a CIDR"))?;
        let mut except = Vec::new();
        for (index, text) in block
            .get("except")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let text = text.as_str().unwrap_or_default();
            except.push(
                Cidr::parse(text).ok_or_else(|| {
                    format!("{at}.ipBlock.except[{index}]: {text:?} is not a CIDR")
                })?,
            );
        }
        return Ok(Peer::IpBlock { cidr, except });
    }
    let namespaces = match peer.get("namespaceSelector").filter(|v| !v.is_null()) {
        Some(value) => Some(Selector::parse(value, &format!("{at}.namespaceSelector"))?),
        None => None,
    };
    let pods = match peer.get("podSelector").filter(|v| !v.is_null()) {
        Some(value) => Some(Selector::parse(value, &format!("{at}.podSelector"))?),
        None => None,
    };
    if namespaces.is_none() && pods.is_none() {
        return Err(format!(
            "{at}: a peer needs podSelector, namespaceSelector or ipBlock"
        ));
    }
    Ok(Peer::Pods { namespaces, pods })
}

fn parse_port(port: &Value, at: &str) -> std::result::Result<PortRule, String> {
    let protocol = Protocol::parse(port.get("protocol"), &format!("{at}.protocol"))?;
    let number = match port.get("port").filter(|v| !v.is_null()) {
        None => None,
        Some(Value::Number(n)) => Some(PortRef::Number(
            n.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{at}.port: {n} is not a port number"))?,
        )),
        Some(Value::String(text)) => Some(match text.parse::<u16>() {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => PortRef::Name(text.clone()),
        }),
        Some(other) => return Err(format!("{at}.port: {other} is not a port number or name")),
    };
    let end_port = match port.get("endPort").filter(|v| !v.is_null()) {
        None => None,
        Some(value) => {
            let end = value
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| format!("{at}.endPort: {value} is not a port number"))?;
            match &number {
                Some(PortRef::Number(start)) if end >= *start => Some(end),
                Some(PortRef::Number(_)) => {
                    return Err(format!("{at}.endPort: must not be below port"));
                }
                _ => return Err(format!("{at}.endPort: needs a numeric port")),
            }
        }
    };
    Ok(PortRule {
        protocol,
        port: number,
        end_port,
    })
}

/// A port a pod's container declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerPort {
    pub port: u16,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A pod as the engine sees it: a Pod, or the pod a workload's template would create.
#[derive(Debug, Clone)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// The object it came from, e.g. `Deployment/shop/web`.
    pub object: String,
    pub labels: Labels,
    pub ip: Option<IpAddr>,
    pub ports: Vec<ContainerPort>,
    /// `status.phase` of a live Pod.
    pub phase: Option<String>,
    /// Pods on the host network are not subject to NetworkPolicy.
    pub host_network: bool,
    pub location: Location,
}

impl Pod {
    /// `namespace/name`, as the matrix names pods.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Reads a pod spec: `template` is the Pod itself or a workload's pod template.
    pub fn from_template(
        object: &KubeObject,
        namespace: &str,
        template: &Value,
    ) -> std::result::Result<Self, String> {
        let labels = template
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(key, value)| Some((key.clone(), scalar_text(value)?)))
                    .collect()
            })
            .unwrap_or_default();
        let spec = template.get("spec").unwrap_or(&Value::Null);
        let mut ports = Vec::new();
        for list in ["containers", "initContainers"] {
            for (c, container) in spec
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                for (p, port) in container
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let at = format!("spec.{list}[{c}].ports[{p}]");
                    let number = port
                        .get("containerPort")
                        .and_then(Value::as_u64)
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| format!("{at}.containerPort: missing or not a port"))?;
                    ports.push(ContainerPort {
                        port: number,
                        protocol: Protocol::parse(port.get("protocol"), &format!("{at}.protocol"))?,
                        name: port.get("name").and_then(Value::as_str).map(str::to_owned),
                    });
                }
            }
        }
        let status = template.get("status");
        Ok(Self {
            namespace: namespace.to_owned(),
            name: object.name.clone(),
            object: format!("{}/{}/{}", object.kind, namespace, object.name),
            labels,
            ip: status
                .and_then(|s| s.get("podIP"))
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse().ok()),
            ports,
            phase: status
                .and_then(|s| s.get("phase"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            host_network: spec.get("hostNetwork").and_then(Value::as_bool) == Some(true),
            location: object.finding_location(),
        })
    }

    /// The container port with this name and protocol (named ports in policies resolve here).
    fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|port| port.name.as_deref() == Some(name) && port.protocol == protocol)
            .map(|port| port.port)
    }
}

/// How one direction judged a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "verdict", content = "policies")]
pub enum DirectionVerdict {
    /// No policy selects the pod for this direction.
    Open,
    /// These policies' rules allow it.
    Allowed(Vec<String>),
    /// These policies select the pod and none of their rules allows it.
    Denied(Vec<String>),
    /// The pod uses the host network; NetworkPolicy does not apply.
    HostNetwork,
}

impl DirectionVerdict {
    pub fn allows(&self) -> bool {
        !matches!(self, DirectionVerdict::Denied(_))
    }

    pub fn policies(&self) -> &[String] {
        match self {
            DirectionVerdict::Allowed(policies) | DirectionVerdict::Denied(policies) => policies,
            DirectionVerdict::Open | DirectionVerdict::HostNetwork => &[],
        }
    }
}

/// The verdict on one connection: source pod to destination pod on a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub allowed: bool,
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
    /// Why, in words: which direction decided and through which policies, and any caveats.
    pub explanation: String,
}

impl Verdict {
    /// The policies that decided: those that allowed it, or those whose isolation denied it.
    pub fn policies(&self) -> Vec<String> {
        let mut policies: BTreeSet<String> = BTreeSet::new();
        if self.allowed {
            policies.extend(self.egress.policies().iter().cloned());
            policies.extend(self.ingress.policies().iter().cloned());
        } else {
            for direction in [&self.egress, &self.ingress] {
                if !direction.allows() {
                    policies.extend(direction.policies().iter().cloned());
                }
            }
        }
        policies.into_iter().collect()
    }
}

/// Namespaces, pods and policies: everything reachability depends on.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, Labels>,
    pub pods: Vec<Pod>,
    pub policies: Vec<Policy>,
    /// Static mode: pods and policies among the files that the API server would refuse (so the
    /// cluster would not have them), with why; left out of the model and reported.
    pub rejected: Vec<Rejected>,
}

/// An object the API server would refuse, and why (naming the field).
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// `Kind/namespace/name`.
    pub object: String,
    pub location: Location,
    pub reason: String,
}

pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl Cluster {
    /// Labels of a namespace; one without a Namespace object has only its name label, which the
    /// API server sets on every namespace.
    pub fn namespace_labels(&self, namespace: &str) -> Labels {
        self.namespaces.get(namespace).cloned().unwrap_or_else(|| {
            Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())])
        })
    }

    pub fn pod(&self, id: &str) -> Option<&Pod> {
        self.pods.iter().find(|pod| pod.id() == id)
    }

    /// Policies that select this pod for a direction.
    pub fn selecting(&self, pod: &Pod, direction: Direction) -> Vec<&Policy> {
        self.policies
            .iter()
            .filter(|policy| policy.selects(pod, direction))
            .collect()
    }

    /// Whether `from` may open a connection to `to` on `port`/`protocol`.
    pub fn verdict(&self, from: &Pod, to: &Pod, port: u16, protocol: Protocol) -> Verdict {
        let mut notes = BTreeSet::new();
        let egress = self.direction(from, to, to, port, protocol, Direction::Egress, &mut notes);
        let ingress = self.direction(to, from, to, port, protocol, Direction::Ingress, &mut notes);
        let allowed = egress.allows() && ingress.allows();
        let mut explanation = vec![
            describe(&egress, Direction::Egress, from),
            describe(&ingress, Direction::Ingress, to),
        ];
        explanation.extend(notes);
        Verdict {
            allowed,
            egress,
            ingress,
            explanation: explanation.join("; "),
        }
    }

    /// Judges one direction for `subject` (the source for egress, the destination for ingress)
    /// against `peer` (the other end); ports are those of `destination`.
    #[allow(clippy::too_many_arguments)]
    fn direction(
        &self,
        subject: &Pod,
        peer: &Pod,
        destination: &Pod,
        port: u16,
        protocol: Protocol,
        direction: Direction,
        notes: &mut BTreeSet<String>,
    ) -> DirectionVerdict {
        if subject.host_network {
            return DirectionVerdict::HostNetwork;
        }
        let selecting = self.selecting(subject, direction);
        if selecting.is_empty() {
            return DirectionVerdict::Open;
        }
        let mut allowed_by = Vec::new();
        for policy in &selecting {
            let rules = match direction {
                Direction::Ingress => &policy.ingress,
                Direction::Egress => &policy.egress,
            };
            let allows = rules.iter().any(|rule| {
                self.rule_matches_peer(rule, policy, peer, notes)
                    && rule_matches_port(rule, destination, port, protocol)
            });
            if allows {
                allowed_by.push(policy.id());
            }
        }
        if allowed_by.is_empty() {
            DirectionVerdict::Denied(selecting.iter().map(|policy| policy.id()).collect())
        } else {
            DirectionVerdict::Allowed(allowed_by)
        }
    }

    fn rule_matches_peer(
        &self,
        rule: &Rule,
        policy: &Policy,
        pod: &Pod,
        notes: &mut BTreeSet<String>,
    ) -> bool {
        let Some(peers) = &rule.peers else {
            return true;
        };
        peers.iter().any(|peer| match peer {
            Peer::Pods { namespaces, pods } => {
                let namespace_matches = match namespaces {
                    // podSelector alone: pods in the policy's own namespace.
                    None => pod.namespace == policy.namespace,
                    Some(selector) => selector.matches(&self.namespace_labels(&pod.namespace)),
                };
                namespace_matches && pods.as_ref().is_none_or(|s| s.matches(&pod.labels))
            }
            Peer::IpBlock { cidr, except } => match pod.ip {
                Some(ip) => cidr.contains(ip) && !except.iter().any(|e| e.contains(ip)),
                None => {
                    notes.insert(format!(
                        "ipBlock peers of {} were not matched against {}: its pod IP is unknown",
                        policy.id(),
                        pod.id()
                    ));
                    false
                }
            },
        })
    }

    /// Ports worth judging for a destination: those its containers declare, and the numeric ports
    /// (or the first port of a range) that policies name in rules which could reach it.
    pub fn ports_of(&self, destination: &Pod) -> Vec<(u16, Protocol)> {
        let mut ports: BTreeSet<(u16, Protocol)> = destination
            .ports
            .iter()
            .map(|port| (port.port, port.protocol))
            .collect();
        let mut ignored = BTreeSet::new();
        for policy in &self.policies {
            let mut rules: Vec<&Rule> = Vec::new();
            if policy.selects(destination, Direction::Ingress) {
                rules.extend(&policy.ingress);
            }
            if policy.egress_isolates {
                rules.extend(policy.egress.iter().filter(|rule| {
                    self.rule_matches_peer(rule, policy, destination, &mut ignored)
                }));
            }
            for rule in rules {
                for port in &rule.ports {
                    if let Some(PortRef::Number(number)) = port.port {
                        ports.insert((number, port.protocol));
                    }
                }
            }
        }
        ports.into_iter().collect()
    }
}

fn rule_matches_port(rule: &Rule, destination: &Pod, port: u16, protocol: Protocol) -> bool {
    if rule.ports.is_empty() {
        return true;
    }
    rule.ports.iter().any(|allowed| {
        allowed.protocol == protocol
            && match &allowed.port {
                None => true,
                Some(PortRef::Number(start)) => {
                    let end = allowed.end_port.unwrap_or(*start);
                    (*start..=end).contains(&port)
                }
                Some(PortRef::Name(name)) => destination.named_port(name, protocol) == Some(port),
            }
    })
}

fn describe(verdict: &DirectionVerdict, direction: Direction, pod: &Pod) -> String {
    let what = direction.as_str();
    match verdict {
        DirectionVerdict::Open => format!("{what} of {} is open (no policy selects it)", pod.id()),
        DirectionVerdict::HostNetwork => {
            format!("{} uses the host network (policies do not apply)", pod.id())
        }
        DirectionVerdict::Allowed(policies) => {
            format!("{what} allowed by {}", policies.join(", "))
        }
        DirectionVerdict::Denied(policies) => format!(
            "{what} denied: {} is selected by {} and no rule allows it",
            pod.id(),
            policies.join(", ")
        ),
    }
}
