//! The gateway's status, pure: conditions from what a reconcile observed.
//!
//! Transition times are kept when a condition's status does not change, so a reconcile that
//! observes nothing new produces an identical status (and no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{CertificateStatus, EdgeGatewayStatus};

/// Condition type: everything is in place and every pod is ready.
pub const READY: &str = "Ready";
/// Condition type: the certificates the pods mount exist and are valid.
pub const CERTIFICATES_READY: &str = "CertificatesReady";
/// Condition type: the spec and everything it references are usable.
pub const CONFIG_VALID: &str = "ConfigValid";
/// Condition type: the gateway's tunnel is connected to the platform.
pub const CONNECTED: &str = "Connected";
/// Condition type: no pod's offline queue fails to be written (a full volume holds updates in
/// memory only).
pub const QUEUE_WRITABLE: &str = "QueueWritable";

/// A problem found while reconciling: a `PascalCase` reason and a human message (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Machine-readable reason, e.g. `ReferenceNotFound`.
    pub reason: String,
    /// What is wrong and where.
    pub message: String,
}

impl Problem {
    /// Builds a problem.
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What one reconcile saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `metadata.generation` of the gateway.
    pub generation: Option<i64>,
    /// The config problem, if any.
    pub config: Option<Problem>,
    /// Certificates in use, or why they are not ready.
    pub certificates: Result<Vec<CertificateStatus>, Problem>,
    /// Pods desired.
    pub replicas: i32,
    /// Pods ready (the StatefulSet's `status.readyReplicas`).
    pub ready_replicas: i32,
    /// Devices the gateway should serve.
    pub devices_desired: i32,
    /// Devices served by ready pods.
    pub devices_running: i32,
    /// Tunnel state reported by ready pods; `None` when no pod could be asked.
    pub connected: Option<Tunnels>,
    /// `host:port` of the Service.
    pub endpoint: String,
}

/// What the ready pods said about their platform tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnels {
    /// Pods whose tunnel is up.
    pub up: usize,
    /// Pods that answered the probe.
    pub answered: usize,
    /// Pods that are ready.
    pub ready: usize,
    /// Pods whose tunnel is down because their last connect failed at the HTTP proxy.
    pub proxy_failing: usize,
    /// Pods whose persisted offline queue cannot be written.
    pub queue_write_failing: usize,
    /// Pods whose tunnel is down because the platform refuses their login.
    pub credentials_refused: usize,
}

/// Builds the status for `obs`, keeping transition times from `previous` where unchanged.
pub fn build(
    previous: Option<&EdgeGatewayStatus>,
    obs: &Observed,
    now: &Time,
) -> EdgeGatewayStatus {
    let prev = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let cond = |type_: &str, ok: Option<bool>, reason: &str, message: String| {
        let status = match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        };
        let last = prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: obs.generation,
            last_transition_time: last.unwrap_or_else(|| now.clone()),
        }
    };

    let config = match &obs.config {
        None => cond(
            CONFIG_VALID,
            Some(true),
            "Valid",
            "spec and references are valid".into(),
        ),
        Some(p) => cond(CONFIG_VALID, Some(false), &p.reason, p.message.clone()),
    };
    let certs = match &obs.certificates {
        Ok(list) => cond(
            CERTIFICATES_READY,
            Some(true),
            "Valid",
            format!("{} certificate(s) valid", list.len()),
        ),
        Err(p) => cond(
            CERTIFICATES_READY,
            Some(false),
            &p.reason,
            p.message.clone(),
        ),
    };
    let pods = format!("{}/{} pods ready", obs.ready_replicas, obs.replicas);
    let ready = if obs.config.is_some() {
        cond(
            READY,
            Some(false),
            "ConfigInvalid",
            "see ConfigValid".into(),
        )
    } else if obs.certificates.is_err() {
        cond(
            READY,
            Some(false),
            "CertificatesNotReady",
            "see CertificatesReady".into(),
        )
    } else if obs.replicas == 0 {
        cond(READY, Some(false), "ScaledToZero", pods)
    } else if obs.ready_replicas >= obs.replicas {
        cond(READY, Some(true), "PodsReady", pods)
    } else {
        cond(READY, Some(false), "PodsNotReady", pods)
    };
    let connected = match obs.connected {
        None => cond(
            CONNECTED,
            None,
            "NotReported",
            "no ready pod answered on its admin port".into(),
        ),
        Some(t) if t.up == t.ready => cond(
            CONNECTED,
            Some(true),
            "TunnelsUp",
            format!("{}/{} pods connected to the platform", t.up, t.ready),
        ),
        Some(t) if t.credentials_refused > 0 => cond(
            CONNECTED,
            Some(false),
            "CredentialsRefused",
            format!(
                "{}/{} pods connected; the platform refuses the login of {} (spec.platform.appKey, or spec.platform.mqtt.username and passwordSecret)",
                t.up, t.ready, t.credentials_refused
            ),
        ),
        Some(t) if t.proxy_failing > 0 => cond(
            CONNECTED,
            Some(false),
            "ProxyUnreachable",
            format!(
                "{}/{} pods connected; {} cannot reach or are refused by the HTTP proxy (spec.platform.proxy)",
                t.up, t.ready, t.proxy_failing
            ),
        ),
        Some(t) => cond(
            CONNECTED,
            Some(false),
            "TunnelDown",
            format!(
                "{}/{} pods connected to the platform ({} answered)",
                t.up, t.ready, t.answered
            ),
        ),
    };
    let queue = match obs.connected {
        None => cond(
            QUEUE_WRITABLE,
            None,
            "NotReported",
            "no ready pod answered on its admin port".into(),
        ),
        Some(t) if t.queue_write_failing > 0 => cond(
            QUEUE_WRITABLE,
            Some(false),
            "QueueWriteFailing",
            format!(
                "{}/{} pods cannot write their offline queue (is the volume full?): updates are held in memory, and lost if the pod restarts before the volume takes them again",
                t.queue_write_failing, t.answered
            ),
        ),
        Some(t) => cond(
            QUEUE_WRITABLE,
            Some(true),
            "Writable",
            format!("{}/{} pods write their offline queue", t.answered, t.answered),
        ),
    };
    let running = if obs.config.is_none() {
        obs.devices_running
    } else {
        0
    };
    EdgeGatewayStatus {
        observed_generation: obs.generation,
        conditions: vec![ready, certs, config, connected, queue],
        replicas: obs.replicas,
        ready_replicas: obs.ready_replicas,
        devices_desired: obs.devices_desired,
        devices_running: running,
        certificates: obs.certificates.clone().unwrap_or_default(),
        endpoint: Some(obs.endpoint.clone()),
    }
}

/// The condition of `type_` in `status`, if set.
pub fn condition<'a>(status: Option<&'a EdgeGatewayStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests;
