//! Command-line flags read exactly as the Kubernetes components parse them: kube-apiserver with
//! spf13/pflag, etcd with Go's `flag` package.
//!
//! The rules both share: `--flag=value`; `--flag value` only for non-boolean flags (the next
//! argument is the value whatever it looks like); a bare boolean flag means true; boolean values
//! as Go's `strconv.ParseBool` reads them; the last occurrence wins; `--` ends the flags. A
//! positional argument makes both programs refuse to start, so it is recorded as a problem, like
//! every other argument they would reject. Unknown flag names are not detected (that would need
//! every flag of every version).

use std::fmt;

/// Whose parser to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// kube-apiserver (pflag): `--name` only, one-letter shorthands with one dash (`-v`).
    ApiServer,
    /// etcd (Go's `flag`): `-name` and `--name` alike; parsing stops at the first non-flag.
    Etcd,
}

impl Component {
    fn is_boolean(self, name: &str) -> bool {
        match self {
            Component::ApiServer => APISERVER_BOOLEAN_FLAGS.contains(&name),
            Component::Etcd => ETCD_BOOLEAN_FLAGS.contains(&name),
        }
    }

    fn program(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::Etcd => "etcd",
        }
    }
}

/// kube-apiserver's boolean flags (current and recent releases, with klog's), which never take
/// the next argument as their value.
pub const APISERVER_BOOLEAN_FLAGS: &[&str] = &[
    "add-dir-header",
    "aggregator-reject-forwarding-redirect",
    "allow-privileged",
    "alsologtostderr",
    "anonymous-auth",
    "audit-log-batch-throttle-enable",
    "audit-log-compress",
    "audit-log-truncate-enabled",
    "audit-webhook-batch-throttle-enable",
    "audit-webhook-truncate-enabled",
    "contention-profiling",
    "disable-http2-serving",
    "enable-aggregator-routing",
    "enable-bootstrap-token-auth",
    "enable-garbage-collector",
    "enable-logs-handler",
    "enable-priority-and-fairness",
    "enable-swagger-ui",
    "encryption-provider-config-automatic-reload",
    "help",
    "kubelet-https",
    "log-json-split-stream",
    "log-text-split-stream",
    "logtostderr",
    "one-output",
    "permit-address-sharing",
    "permit-port-sharing",
    "profiling",
    "repair-malformed-updates",
    "service-account-extend-token-expiration",
    "service-account-lookup",
    "shutdown-send-retry-after",
    "skip-headers",
    "skip-log-headers",
    "version",
    "watch-cache",
];

/// etcd's boolean flags (3.4 to 3.5).
pub const ETCD_BOOLEAN_FLAGS: &[&str] = &[
    "auto-tls",
    "client-cert-auth",
    "debug",
    "enable-grpc-gateway",
    "enable-log-rotation",
    "enable-pprof",
    "enable-v2",
    "experimental-compact-hash-check-enabled",
    "experimental-enable-distributed-tracing",
    "experimental-enable-lease-checkpoint",
    "experimental-enable-lease-checkpoint-persist",
    "experimental-initial-corrupt-check",
    "experimental-memory-mlock",
    "experimental-peer-skip-client-san-verification",
    "experimental-stop-grpc-service-on-defrag",
    "experimental-txn-mode-write-with-shared-buffer",
    "force-new-cluster",
    "help",
    "peer-auto-tls",
    "peer-client-cert-auth",
    "pre-vote",
    "socket-reuse-address",
    "socket-reuse-port",
    "strict-reconfig-check",
    "unsafe-no-fsync",
    "version",
];

/// Go's `strconv.ParseBool`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// One flag as given: its name without dashes and its value (`true` for a bare boolean).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: String,
    /// Index of the argument that named the flag (0 = the first argument after the program).
    pub position: usize,
}

/// An argument the component would refuse to start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagProblem {
    pub position: usize,
    pub argument: String,
    pub message: String,
}

impl fmt::Display for FlagProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argument {} {:?}: {}",
            self.position + 1,
            self.argument,
            self.message
        )
    }
}

/// A component's parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    flags: Vec<Flag>,
    problems: Vec<FlagProblem>,
}

fn normalize(name: &str) -> &str {
    name.trim_start_matches('-')
}

impl Flags {
    /// Parses `args` (without the program name) as `component` would.
    pub fn parse<S: AsRef<str>>(component: Component, args: &[S]) -> Flags {
        let mut flags = Flags::default();
        let mut index = 0;
        while index < args.len() {
            let position = index;
            let argument = args[index].as_ref();
            index += 1;
            if argument == "--" {
                for (offset, rest) in args[index..].iter().enumerate() {
                    flags.positional(component, position + 1 + offset, rest.as_ref());
                }
                break;
            }
            let body = match (component, argument) {
                (_, arg) if arg.starts_with("---") => {
                    flags.problem(position, arg, "bad flag syntax");
                    continue;
                }
                (_, arg) if arg.starts_with("--") => &arg[2..],
                (Component::Etcd, arg) if arg.starts_with('-') && arg.len() > 1 => &arg[1..],
                (Component::ApiServer, arg) if arg.starts_with('-') && arg.len() > 1 => {
                    index = flags.shorthand(args, position, index);
                    continue;
                }
                (Component::Etcd, arg) => {
                    // Go's flag package stops at the first non-flag argument; etcd then refuses
                    // every leftover argument.
                    for (offset, rest) in std::iter::once(arg)
                        .chain(args[index..].iter().map(AsRef::as_ref))
                        .enumerate()
                    {
                        flags.positional(component, position + offset, rest);
                    }
                    break;
                }
                (Component::ApiServer, arg) => {
                    flags.positional(component, position, arg);
                    continue;
                }
            };
            let (name, inline_value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
                flags.problem(position, argument, "bad flag syntax");
                continue;
            }
            let value = match inline_value {
                Some(value) => value.to_owned(),
                None if component.is_boolean(name) => "true".to_owned(),
                None => match args.get(index) {
                    Some(next) => {
                        index += 1;
                        next.as_ref().to_owned()
                    }
                    None => {
                        flags.problem(position, argument, "flag needs an argument");
                        continue;
                    }
                },
            };
            if component.is_boolean(name) && parse_bool(&value).is_none() {
                flags.problem(
                    position,
                    argument,
                    &format!("invalid boolean value {value:?} (Go's ParseBool accepts 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)"),
                );
                continue;
            }
            flags.flags.push(Flag {
                name: name.to_owned(),
                value,
                position,
            });
        }
        flags
    }

    /// pflag's one-dash shorthands: kube-apiserver defines only `-v` (klog verbosity) and `-h`.
    fn shorthand<S: AsRef<str>>(&mut self, args: &[S], position: usize, next: usize) -> usize {
        let argument = args[position].as_ref();
        let body = &argument[1..];
        let letter = &body[..body.chars().next().map_or(0, char::len_utf8)];
        match letter {
            "h" if body.len() == 1 => {
                self.push(position, "help", "true");
                next
            }
            "v" => {
                let rest = body[1..].trim_start_matches('=');
                if !rest.is_empty() {
                    self.push(position, "v", rest);
                    next
                } else if let Some(value) = args.get(next) {
                    self.push(position, "v", value.as_ref());
                    next + 1
                } else {
                    self.problem(position, argument, "flag needs an argument: 'v' in -v");
                    next
                }
            }
            _ => {
                self.problem(
                    position,
                    argument,
                    &format!("unknown shorthand flag: {letter:?} in {argument}"),
                );
                next
            }
        }
    }

    fn push(&mut self, position: usize, name: &str, value: &str) {
        self.flags.push(Flag {
            name: name.to_owned(),
            value: value.to_owned(),
            position,
        });
    }

    fn positional(&mut self, component: Component, position: usize, argument: &str) {
        // kube-apiserver's command accepts empty arguments and refuses any other.
        if component == Component::ApiServer && argument.is_empty() {
            return;
        }
        let message = match component {
            Component::ApiServer => format!(
                "{} does not take any arguments: the API server would not start",
                component.program()
            ),
            Component::Etcd => format!("{:?} is not a valid flag: etcd would not start", argument),
        };
        self.problem(position, argument, &message);
    }

    fn problem(&mut self, position: usize, argument: &str, message: &str) {
        self.problems.push(FlagProblem {
            position,
            argument: argument.to_owned(),
            message: message.to_owned(),
        });
    }

    /// The value of the last occurrence (`--name` or `name`).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = normalize(name);
        self.flags
            .iter()
            .rev()
            .find(|flag| flag.name == name)
            .map(|flag| flag.value.as_str())
    }

    /// The last occurrence read as a boolean (Go's ParseBool); `None` when absent or unreadable.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(parse_bool)
    }

    /// Every occurrence's value, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        let name = normalize(name);
        self.flags
            .iter()
            .filter(|flag| flag.name == name)
            .map(|flag| flag.value.as_str())
            .collect()
    }

    /// The last occurrence split on commas (`--authorization-mode=Node,RBAC`), empty items dropped.
    pub fn get_list(&self, name: &str) -> Vec<&str> {
        self.get(name)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every flag as given, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Flag> {
        self.flags.iter()
    }

    /// Arguments the component would refuse to start with.
    pub fn problems(&self) -> &[FlagProblem] {
        &self.problems
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn apiserver(args: &[&str]) -> Flags {
        Flags::parse(Component::ApiServer, args)
    }

    #[test]
    fn a_value_after_an_equals_sign_is_the_flags_value() {
        let flags = apiserver(&["--etcd-servers=https://127.0.0.1:2379"]);
        assert_eq!(flags.get("etcd-servers"), Some("https://127.0.0.1:2379"));
        assert_eq!(flags.get("--etcd-servers"), Some("https://127.0.0.1:2379"));
        assert!(flags.problems().is_empty());
    }

    #[test]
    fn a_non_boolean_flag_takes_the_next_argument_whatever_it_looks_like() {
        let flags = apiserver(&["--encryption-provider-config", "--anonymous-auth=false"]);
        assert_eq!(
            flags.get("encryption-provider-config"),
            Some("--anonymous-auth=false")
        );
        assert_eq!(flags.get("anonymous-auth"), None);
    }

    #[test]
    fn a_boolean_flag_never_takes_the_next_argument() {
        let flags = apiserver(&["--anonymous-auth", "false"]);
        assert_eq!(flags.get_bool("anonymous-auth"), Some(true));
        assert_eq!(flags.problems().len(), 1);
        assert!(
            flags.problems()[0]
                .message
                .contains("does not take any arguments")
        );
        assert_eq!(flags.problems()[0].argument, "false");
    }

    #[test]
    fn a_bare_boolean_flag_means_true() {
        let flags = apiserver(&["--profiling"]);
        assert_eq!(flags.get("profiling"), Some("true"));
        assert_eq!(flags.get_bool("profiling"), Some(true));
    }

    #[test]
    fn boolean_values_are_read_as_go_parse_bool_reads_them() {
        for value in ["1", "t", "T", "TRUE", "true", "True"] {
            let flags = apiserver(&[&format!("--anonymous-auth={value}")]);
            assert_eq!(flags.get_bool("anonymous-auth"), Some(true), "{value}");
        }
        for value in ["0", "f", "F", "FALSE", "false", "False"] {
            let flags = apiserver(&[&format!("--anonymous-auth={value}")]);
            assert_eq!(flags.get_bool("anonymous-auth"), Some(false), "{value}");
        }
        for value in ["yes", "no", "on", "tRUE", ""] {
            let flags = apiserver(&[&format!("--anonymous-auth={value}")]);
            assert_eq!(flags.get_bool("anonymous-auth"), None, "{value}");
            assert!(
                flags.problems()[0].message.contains("invalid boolean"),
                "{value}"
            );
        }
    }

    #[test]
    fn the_last_occurrence_wins_and_every_value_is_kept() {
        let flags = apiserver(&[
            "--anonymous-auth=false",
            "--authorization-mode=AlwaysAllow",
            "--anonymous-auth",
            "--authorization-mode",
            "Node,RBAC",
        ]);
        assert_eq!(flags.get_bool("anonymous-auth"), Some(true));
        assert_eq!(flags.get_list("authorization-mode"), ["Node", "RBAC"]);
        assert_eq!(
            flags.values("authorization-mode"),
            ["AlwaysAllow", "Node,RBAC"]
        );
    }

    #[test]
    fn a_stray_positional_argument_is_a_problem_the_api_server_would_not_start_with() {
        let flags = apiserver(&["--secure-port=6443", "encryption.yaml", "--profiling=false"]);
        assert_eq!(flags.problems().len(), 1);
        assert_eq!(flags.problems()[0].position, 1);
        // pflag keeps parsing flags after a positional argument.
        assert_eq!(flags.get_bool("profiling"), Some(false));
    }

    #[test]
    fn a_double_dash_ends_the_flags() {
        let flags = apiserver(&["--", "--profiling=false"]);
        assert_eq!(flags.get("profiling"), None);
        assert_eq!(flags.problems().len(), 1);
    }

    #[test]
    fn a_missing_value_at_the_end_is_a_problem() {
        let flags = apiserver(&["--etcd-servers"]);
        assert_eq!(flags.get("etcd-servers"), None);
        assert!(flags.problems()[0].message.contains("needs an argument"));
    }

    #[test]
    fn bad_syntax_and_unknown_shorthands_are_problems() {
        let flags = apiserver(&["---x", "--=x", "-encryption-provider-config=/x"]);
        assert_eq!(flags.problems().len(), 3);
        assert!(flags.problems()[2].message.contains("unknown shorthand"));
    }

    #[test]
    fn the_verbosity_shorthand_takes_a_value() {
        let flags = apiserver(&["-v=2", "-v", "4"]);
        assert_eq!(flags.get("v"), Some("4"));
        assert!(flags.problems().is_empty());
    }

    #[test]
    fn an_empty_value_after_equals_is_kept_as_empty() {
        let flags = apiserver(&["--encryption-provider-config="]);
        assert_eq!(flags.get("encryption-provider-config"), Some(""));
    }

    #[test]
    fn etcd_accepts_one_or_two_dashes_and_stops_at_the_first_positional_argument() {
        let flags = Flags::parse(
            Component::Etcd,
            &[
                "-client-cert-auth",
                "--cert-file",
                "/pki/server.crt",
                "stray",
                "--peer-client-cert-auth",
            ],
        );
        assert_eq!(flags.get_bool("client-cert-auth"), Some(true));
        assert_eq!(flags.get("cert-file"), Some("/pki/server.crt"));
        assert_eq!(flags.get("peer-client-cert-auth"), None);
        assert_eq!(flags.problems().len(), 2);
        assert!(flags.problems()[0].message.contains("not a valid flag"));
    }

    #[test]
    fn an_etcd_boolean_given_as_a_separate_word_is_refused() {
        let flags = Flags::parse(Component::Etcd, &["--client-cert-auth", "false"]);
        assert_eq!(flags.get_bool("client-cert-auth"), Some(true));
        assert_eq!(flags.problems().len(), 1);
    }
}
