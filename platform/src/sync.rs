//! What the platform does after an edge binds things, as ThingWorx does it:
//!
//! 1. learn each thing's definitions (`GetMetadata`), as ThingWorx browses a remote thing;
//! 2. read the values it holds none of — after a platform restart the registry is empty, and a
//!    property that no longer changes would stay missing (ThingWorx's remote-binding start
//!    type "read edge value");
//! 3. send `NotifyPropertyUpdate`, on which SDK edges fetch `GetPropertySubscriptions` and
//!    push their current values (twApi.c, `notifyPropertyUpdateHandler` and
//!    `subscribedPropertyUpdateTask`).
//!
//! It also answers `GetPropertySubscriptions`, which needs the definitions: SDK edges look each
//! row's `edgeName` up as a property name, so the configured `*` row is sent as one row per
//! property the edge defined.

use std::sync::Arc;

use edgeway_protocol::metadata::ThingMetadata;
use edgeway_protocol::vtq::QUALITY_GOOD;
use edgeway_protocol::{Message, PropertyUpdate, Request, StatusCode};

use crate::config::SubscriptionRow;
use crate::edge::{subscriptions_table, EdgeContext};
use crate::session::{now_ms, EdgeSession};

/// Things synchronised at once per BIND: enough to overlap round trips, few enough that a
/// BIND of thousands of names does not flood the edge with requests.
const CONCURRENCY: usize = 8;

/// Runs the after-BIND synchronisation of `things` on `session`.
pub async fn after_bind(ctx: Arc<EdgeContext>, session: Arc<EdgeSession>, things: Vec<String>) {
    let next = std::sync::Mutex::new(things.into_iter());
    let worker = || async {
        loop {
            let thing = next.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some(thing) = thing else { break };
            if session.is_closing() {
                break;
            }
            sync_thing(&ctx, &session, &thing).await;
        }
    };
    futures_util::future::join_all((0..CONCURRENCY).map(|_| worker())).await;
}

async fn sync_thing(ctx: &EdgeContext, session: &EdgeSession, thing: &str) {
    if let Some(meta) = fetch_metadata(ctx, session, thing).await {
        read_missing(ctx, session, thing, &meta).await;
    }
    match session
        .notify_property_update(thing, ctx.request_timeout)
        .await
    {
        Ok(r) if r.status.is_success() => {}
        Ok(r) => {
            tracing::debug!(session = session.id, thing, status = ?r.status, "NotifyPropertyUpdate refused")
        }
        Err(e) => {
            tracing::debug!(session = session.id, thing, error = %e, "NotifyPropertyUpdate failed")
        }
    }
}

/// Asks the edge for `thing`'s definitions and keeps them; `None` when it cannot describe it.
async fn fetch_metadata(
    ctx: &EdgeContext,
    session: &EdgeSession,
    thing: &str,
) -> Option<Arc<ThingMetadata>> {
    let resp = match session.get_metadata(thing, ctx.request_timeout).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(session = session.id, thing, error = %e, "GetMetadata failed");
            return None;
        }
    };
    if !resp.status.is_success() {
        tracing::debug!(session = session.id, thing, status = ?resp.status, "edge does not describe the thing");
        return None;
    }
    match resp.content.as_ref().map(ThingMetadata::from_infotable) {
        Some(Ok(m)) => {
            ctx.registry.set_metadata(thing, m);
            ctx.registry.metadata(thing)
        }
        Some(Err(e)) => {
            tracing::warn!(session = session.id, thing, error = %e, "GetMetadata answer not understood");
            None
        }
        None => None,
    }
}

/// Reads every defined property of `thing` that has no stored value, and stores the answers.
async fn read_missing(ctx: &EdgeContext, session: &EdgeSession, thing: &str, meta: &ThingMetadata) {
    let missing: Vec<&str> = meta
        .property_definitions
        .keys()
        .filter(|p| ctx.registry.latest(thing, p).is_none())
        .map(String::as_str)
        .collect();
    let mut updates = Vec::new();
    for p in missing {
        let resp = match session.read_property(thing, p, ctx.request_timeout).await {
            Ok(r) if r.status.is_success() => r,
            _ => continue,
        };
        let value = resp.content.as_ref().and_then(|c| {
            c.get(0, p)
                .or_else(|| c.rows.first().and_then(|r| r.first()))
                .cloned()
        });
        if let Some(value) = value {
            updates.push(PropertyUpdate {
                name: p.to_owned(),
                value,
                time: now_ms(),
                quality: QUALITY_GOOD.to_owned(),
            });
        }
    }
    if updates.is_empty() {
        return;
    }
    match ctx.registry.seed(session.id, thing, updates) {
        Ok(kept) => tracing::info!(
            session = session.id,
            thing,
            read = kept,
            "missing values read from the edge"
        ),
        Err(e) => {
            tracing::debug!(session = session.id, thing, error = %e, "values read after the binding moved")
        }
    }
}

/// Answers `GetPropertySubscriptions` for `r`, learning the thing's definitions first when the
/// configured rows need them.
pub async fn answer_subscriptions(ctx: Arc<EdgeContext>, session: Arc<EdgeSession>, r: Request) {
    let rows = ctx
        .registry
        .subscription_rows(&r.entity_name, &ctx.subscriptions);
    let wildcard = rows.iter().any(|row| row.edge_name == "*");
    let meta = if wildcard {
        match ctx.registry.metadata(&r.entity_name) {
            Some(m) => Some(m),
            None => fetch_metadata(&ctx, &session, &r.entity_name).await,
        }
    } else {
        None
    };
    let rows = expand(rows, meta.as_deref());
    let reply = Message::reply_to(&r, StatusCode::SUCCESS, Some(subscriptions_table(&rows)));
    let _ = session.send(reply).await;
}

/// The rows an edge receives: a `*` row becomes one row per property the edge defined, with
/// the row's push settings or, where it leaves them empty, the edge's own. Without
/// definitions (an edge that does not answer `GetMetadata`) the `*` row is sent as it is;
/// SDK edges always answer, so they never see it.
pub fn expand(rows: Vec<SubscriptionRow>, meta: Option<&ThingMetadata>) -> Vec<SubscriptionRow> {
    let Some(meta) = meta else { return rows };
    let mut out: Vec<SubscriptionRow> = Vec::new();
    for row in rows {
        if row.edge_name != "*" {
            out.retain(|r| r.edge_name != row.edge_name);
            out.push(row);
            continue;
        }
        for (name, def) in &meta.property_definitions {
            if out.iter().any(|r| &r.edge_name == name) {
                continue;
            }
            let push_type = if row.push_type.is_empty() {
                def.push_type().unwrap_or("VALUE").to_owned()
            } else {
                row.push_type.clone()
            };
            let push_threshold = if row.push_threshold == 0.0 {
                def.push_threshold().unwrap_or(0.0)
            } else {
                row.push_threshold
            };
            out.push(SubscriptionRow {
                edge_name: name.clone(),
                push_type,
                push_threshold,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
