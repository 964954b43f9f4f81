//! What an API error means for the agent, in one line: RBAC forbids a verb on a resource, the
//! API server is unreachable, or something else (as the client says it).

use kube::runtime::watcher;

/// An API call's failure, sorted by what the agent does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// 403: the service account (or kubeconfig user) lacks `verb` on `resource`.
    Forbidden { message: String },
    /// No answer: connection refused, TLS or DNS failure, timeout.
    Unreachable(String),
    /// The server answered with another error.
    Other(String),
}

impl ApiFailure {
    pub fn of_client(e: &kube::Error) -> Self {
        match e {
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden {
                message: status.message.clone(),
            },
            kube::Error::Api(status) => Self::Other(format!(
                "{} ({}{})",
                status.message,
                status.code,
                if status.reason.is_empty() {
                    String::new()
                } else {
                    format!(" {}", status.reason)
                }
            )),
            other => Self::Unreachable(one_line(&other.to_string())),
        }
    }

    /// A watcher's error, and the verb it failed at (`list` or `watch`).
    pub fn of_watcher(e: &watcher::Error) -> (Self, &'static str) {
        match e {
            watcher::Error::InitialListFailed(e) => (Self::of_client(e), "list"),
            watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
                (Self::of_client(e), "watch")
            }
            watcher::Error::WatchError(status) if status.code == 403 => (
                Self::Forbidden {
                    message: status.message.clone(),
                },
                "watch",
            ),
            watcher::Error::WatchError(status) => (
                Self::Other(format!("{} ({})", status.message, status.code)),
                "watch",
            ),
            watcher::Error::NoResourceVersion => (Self::Other(e.to_string()), "watch"),
        }
    }
}

/// The one line an RBAC refusal gets: the verb and resource missing, where, and what the agent
/// goes on without.
pub fn forbidden_line(verb: &str, resource: &str, scope: &str, without: &str) -> String {
    format!(
        "RBAC forbids `{verb} {resource}` {scope}: add the verb to the agent's ClusterRole \
         (rules: apiGroups [\"\"], resources [\"{resource}\"], verbs [\"{verb}\"]); {without}; the audit goes on"
    )
}

/// Error chains from the HTTP stack can span lines; a log line must not.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_verb_and_resource() {
        let status = kube::core::Status::failure(
            "events is forbidden: User \"x\" cannot create resource \"events\"",
            "Forbidden",
        )
        .with_code(403);
        let e = kube::Error::Api(Box::new(status));
        assert!(matches!(
            ApiFailure::of_client(&e),
            ApiFailure::Forbidden { .. }
        ));
        let line = forbidden_line(
            "create",
            "events",
            "in namespace default",
            "Events are not posted",
        );
        assert!(
            line.starts_with("RBAC forbids `create events` in namespace default"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
