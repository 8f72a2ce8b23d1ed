//! Who may do what on the things API: rules from `auth.authorization` (the EdgeGateway's
//! `spec.server.authorization`), as ghostunnel's `--allow-cn` but per action and target.
//!
//! A rule names principals (`mtls:<CN/SAN glob>`, `basic:<user glob>`, `oauth:<consumer glob>`)
//! and what they may do: `read` and `write` properties, `invoke` services, `fire` events, on
//! things, templates and property/service/event names (globs with `*`; an empty list is any).
//! Without rules every authenticated principal may do everything, as before; once there is one
//! rule, what no rule allows is denied (403 naming the rule set). [`decide`] is a pure function.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Identity;

/// One rule: these principals may do these actions on these targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// Name shown in logs.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// `method:glob`, e.g. `mtls:controller-*`, `basic:alice`, `oauth:plant-scada`.
    #[schemars(
        length(min = 1, max = 64),
        inner(regex(pattern = r"^(mtls|basic|oauth):.+$"))
    )]
    pub principals: Vec<String>,
    /// Allowed actions.
    #[schemars(length(min = 1, max = 4))]
    pub actions: Vec<Action>,
    /// Thing name globs; empty: every thing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub things: Vec<String>,
    /// Template name globs; empty: any template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
    /// Property, service or event name globs; empty: every name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Read properties, metadata, the thing list.
    Read,
    /// Write properties.
    Write,
    /// Invoke services.
    Invoke,
    /// Fire events.
    Fire,
}

/// One request as the rules see it. `name` is `None` for the whole thing (all properties,
/// metadata): only rules without `names` cover it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The action.
    pub action: Action,
    /// The thing, `None` for the thing list.
    pub thing: Option<&'a str>,
    /// The thing's template, when it has one.
    pub template: Option<&'a str>,
    /// The property, service or event.
    pub name: Option<&'a str>,
}

/// The outcome: allowed by a rule (named), allowed because there are no rules, or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'r> {
    /// No rules: authentication is enough.
    Open,
    /// This rule allows it.
    Allowed(&'r str),
    /// No rule allows it.
    Denied,
}

/// Checks a request against the rules.
pub fn decide<'r>(rules: &'r [Rule], who: &Identity, req: Request<'_>) -> Decision<'r> {
    if rules.is_empty() {
        return Decision::Open;
    }
    rules
        .iter()
        .find(|r| covers(r, who, &req))
        .map_or(Decision::Denied, |r| Decision::Allowed(&r.name))
}

fn covers(rule: &Rule, who: &Identity, req: &Request<'_>) -> bool {
    let principal = rule.principals.iter().any(|p| match p.split_once(':') {
        Some((method, pattern)) => method == who.method.as_str() && glob(pattern, &who.name),
        None => false,
    });
    let any = |patterns: &[String], value: Option<&str>| {
        patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| glob(p, v)))
    };
    principal
        && rule.actions.contains(&req.action)
        && (req.thing.is_none() || any(&rule.things, req.thing))
        && any(&rule.templates, req.template)
        && match req.name {
            Some(n) => any(&rule.names, Some(n)),
            None => rule.names.is_empty(),
        }
}

/// `*` matches any run of characters (also none); everything else matches itself.
pub fn glob(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::super::AuthMethod;
    use super::*;

    fn who(method: AuthMethod, name: &str) -> Identity {
        Identity {
            method,
            name: name.into(),
        }
    }

    fn rule(
        name: &str,
        principals: &[&str],
        actions: &[Action],
        things: &[&str],
        names: &[&str],
    ) -> Rule {
        Rule {
            name: name.into(),
            principals: principals.iter().map(|s| s.to_string()).collect(),
            actions: actions.to_vec(),
            things: things.iter().map(|s| s.to_string()).collect(),
            templates: Vec::new(),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn req<'a>(action: Action, thing: &'a str, name: Option<&'a str>) -> Request<'a> {
        Request {
            action,
            thing: Some(thing),
            template: Some("pump"),
            name,
        }
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("controller-*", "controller-12"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYc"));
        assert!(!glob("a*b", "ab-"));
        assert!(!glob("Pump", "Pump1"));
    }

    #[test]
    fn no_rules_is_open_and_rules_deny_by_default() {
        let alice = who(AuthMethod::Basic, "alice");
        assert_eq!(
            decide(&[], &alice, req(Action::Write, "P1", Some("rpm"))),
            Decision::Open
        );
        let rules = [
            rule("readers", &["basic:*"], &[Action::Read], &[], &[]),
            rule(
                "pump-ops",
                &["mtls:controller-*"],
                &[Action::Write, Action::Invoke],
                &["Pump*"],
                &["rpm", "Start*"],
            ),
        ];
        assert_eq!(
            decide(&rules, &alice, req(Action::Read, "P1", None)),
            Decision::Allowed("readers")
        );
        assert_eq!(
            decide(&rules, &alice, req(Action::Write, "Pump1", Some("rpm"))),
            Decision::Denied
        );
        let ctl = who(AuthMethod::Mtls, "controller-7");
        assert_eq!(
            decide(
                &rules,
                &ctl,
                req(Action::Invoke, "Pump1", Some("StartMotor"))
            ),
            Decision::Allowed("pump-ops")
        );
        assert_eq!(
            decide(&rules, &ctl, req(Action::Invoke, "Pump1", Some("Reset"))),
            Decision::Denied
        );
        assert_eq!(
            decide(&rules, &ctl, req(Action::Write, "Valve1", Some("rpm"))),
            Decision::Denied
        );
        // A basic user named like a certificate is another principal.
        let fake = who(AuthMethod::Basic, "controller-7");
        assert_eq!(
            decide(
                &rules,
                &fake,
                req(Action::Invoke, "Pump1", Some("StartMotor"))
            ),
            Decision::Denied
        );
        // The whole thing needs a rule without names.
        assert_eq!(
            decide(&rules, &ctl, req(Action::Write, "Pump1", None)),
            Decision::Denied
        );
    }
}
