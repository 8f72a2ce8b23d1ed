//! The Secrets a gateway needs: the namespace CA (created, rotated), the issued server and
//! client certificates (issued, renewed), user-given TLS Secrets (read only) and the generated
//! basic-auth credentials. Keys and passwords never leave these functions except into Secrets.

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::Api;

use crate::certs::{self, Ca, CaDecision, LeafDecision, Lifetime, Usage, HOUR};
use crate::context::{publish, publish_about, Context, Made};
use crate::crd::{CertificateStatus, EdgeGateway, KeyFormat, SecretKeyRef};
use crate::error::{kube_err, Error};
use crate::resources::{self, Names, NamespaceCa, FIELD_MANAGER};
use crate::status::Problem;

/// Text of a Secret key, if present and UTF-8.
pub fn secret_text(s: &Secret, key: &str) -> Option<String> {
    let b = s.data.as_ref()?.get(key)?;
    String::from_utf8(b.0.clone()).ok()
}

/// A namespace CA ready to issue: the CA, its trust bundle (`ca.crt`) and when it rotates.
pub struct IssuingCa {
    /// The current CA.
    pub ca: Ca,
    /// The trust bundle: current plus, during a rotation, the previous CA.
    pub bundle: String,
    /// When the CA next needs attention: its rotation, or the end of a rotation's overlap.
    pub rotate_at: i64,
}

/// Loads, creates or rotates one namespace CA; returns it, its trust bundle and rotation time.
pub async fn ensure_ca(
    ctx: &Context,
    gw: &EdgeGateway,
    ns: &str,
    which: NamespaceCa,
    now: i64,
) -> Result<IssuingCa, Error> {
    let name = which.secret_name();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let cn = which.common_name(ns);
    let found = ctx.children.get(&api, ns, name).await?;
    let existing = match found {
        Some(existing) => existing,
        None => {
            let ca = Ca::generate(&cn, now, ctx.settings.ca_lifetime)?;
            let bundle = certs::trust_bundle(&ca, "", now);
            let secret = resources::ca_secret(which, ns, &ca.cert_pem, &ca.key_pem, &bundle, None);
            match api.create(&pp, &secret).await {
                Ok(created) => {
                    ctx.children.saw(&created);
                    let note = format!("created CA Secret {ns}/{name}");
                    publish_about(ctx, gw, EventType::Normal, "CACreated", note, Some(name)).await;
                    let rotate_at = rotate_time(&ca);
                    return Ok(IssuingCa {
                        ca,
                        bundle,
                        rotate_at,
                    });
                }
                // Another reconcile in this namespace made it first: use that one.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let made = api
                        .get(name)
                        .await
                        .map_err(kube_err("get", "Secret", name))?;
                    ctx.children.saw(&made);
                    made
                }
                Err(source) => {
                    return Err(Error::Kube {
                        action: "create",
                        kind: "Secret",
                        name: name.into(),
                        source,
                    })
                }
            }
        }
    };
    let bad = |reason: String| Error::BadCa {
        secret: name,
        namespace: ns.into(),
        reason,
    };
    let cert = secret_text(&existing, "tls.crt").ok_or_else(|| bad("no tls.crt".into()))?;
    let key = secret_text(&existing, "tls.key").ok_or_else(|| bad("no tls.key".into()))?;
    let old_bundle = secret_text(&existing, "ca.crt").unwrap_or_default();
    let current = Ca::load(&cert, &key).map_err(|e| bad(e.to_string()))?;
    let next = match (
        secret_text(&existing, "next.crt"),
        secret_text(&existing, "next.key"),
    ) {
        (Some(c), Some(k)) => Some(Ca::load(&c, &k).map_err(|e| bad(format!("next: {e}")))?),
        _ => None,
    };
    let overlap = ctx.settings.ca_overlap;
    // (signing CA, successor during the overlap, trust bundle, when to look again)
    let (ca, next, bundle, act_at) = match next {
        Some(n) if now >= certs::promote_at(&current, &n, overlap) => {
            let bundle =
                certs::trust_bundle(&n, &format!("{old_bundle}\n{}", current.cert_pem), now);
            publish(
                ctx,
                gw,
                EventType::Normal,
                "CARotated",
                format!(
                    "the new CA in Secret {ns}/{name} signs from now on; the old CA stays in \
                     ca.crt until it expires"
                ),
            )
            .await;
            let at = rotate_time(&n);
            (n, None, bundle, at)
        }
        Some(n) => {
            let at = certs::promote_at(&current, &n, overlap);
            let bundle =
                certs::trust_bundle(&current, &format!("{old_bundle}\n{}", n.cert_pem), now);
            (current, Some(n), bundle, at)
        }
        None => match certs::decide_ca(&current, now) {
            CaDecision::Keep { rotate_at } => {
                let bundle = certs::trust_bundle(&current, &old_bundle, now);
                (current, None, bundle, rotate_at)
            }
            // No overlap asked for, or none left before the current CA expires: at once.
            CaDecision::Rotate if now >= current.not_after - 24 * HOUR || overlap <= 0 => {
                let new = Ca::generate(&cn, now, ctx.settings.ca_lifetime)?;
                let bundle =
                    certs::trust_bundle(&new, &format!("{old_bundle}\n{}", current.cert_pem), now);
                publish(
                    ctx,
                    gw,
                    EventType::Normal,
                    "CARotated",
                    format!(
                        "rotated CA in Secret {ns}/{name}; the old CA stays in ca.crt until it expires"
                    ),
                )
                .await;
                let at = rotate_time(&new);
                (new, None, bundle, at)
            }
            CaDecision::Rotate => {
                // The successor is published first and signs only after the overlap, so devices
                // that trust only the old CA keep verifying servers until they fetched ca.crt.
                let n = Ca::generate(&cn, now, ctx.settings.ca_lifetime)?;
                let at = certs::promote_at(&current, &n, overlap);
                let bundle =
                    certs::trust_bundle(&current, &format!("{old_bundle}\n{}", n.cert_pem), now);
                publish(
                    ctx,
                    gw,
                    EventType::Normal,
                    "CARotationStarted",
                    format!(
                        "new CA published in ca.crt of Secret {ns}/{name}; server certificates \
                         keep coming from the current CA for {} h more",
                        (at - now) / HOUR
                    ),
                )
                .await;
                (current, Some(n), bundle, at)
            }
        },
    };
    let stored_next = secret_text(&existing, "next.crt");
    let next_pem = next.as_ref().map(|n| n.cert_pem.clone());
    if ca.cert_pem != cert || bundle != old_bundle || stored_next != next_pem {
        let next_pair = next
            .as_ref()
            .map(|n| (n.cert_pem.as_str(), n.key_pem.as_str()));
        let mut secret =
            resources::ca_secret(which, ns, &ca.cert_pem, &ca.key_pem, &bundle, next_pair);
        secret.metadata.resource_version = existing.metadata.resource_version.clone();
        let replaced = api
            .replace(name, &pp, &secret)
            .await
            .map_err(kube_err("replace", "Secret", name))?;
        ctx.children.saw(&replaced);
    }
    ctx.metrics
        .certificate(ns, "", which.label(), ca.not_after, Some(act_at));
    Ok(IssuingCa {
        ca,
        bundle,
        rotate_at: act_at,
    })
}

fn rotate_time(ca: &Ca) -> i64 {
    match certs::decide_ca(ca, ca.not_before) {
        CaDecision::Keep { rotate_at } => rotate_at,
        CaDecision::Rotate => ca.not_before,
    }
}

/// Issues or renews the server certificate (from the gateway CA) and the tunnel client
/// certificate (from the tunnel CA); reads user-given TLS Secrets.
pub async fn ensure_certificates(
    ctx: &Context,
    gw: &EdgeGateway,
    names: &Names,
    (gateway_ca, tunnel_ca): (&IssuingCa, &IssuingCa),
    now: i64,
    next: &mut i64,
    made: &Made,
) -> Result<Result<Vec<CertificateStatus>, Problem>, Error> {
    let spec = &gw.spec;
    let lifetime = Lifetime {
        duration: i64::from(spec.certificates.duration_hours) * HOUR,
        renew_before: spec
            .certificates
            .renew_before_hours
            .map(|h| i64::from(h) * HOUR),
    };
    let leaves = [
        (
            "server",
            spec.server.tls_secret_name.clone().map(|n| UserTls {
                name: n,
                format: spec.server.tls_secret_format,
                passphrase: spec.server.tls_key_passphrase_secret.clone(),
            }),
            names.server_tls(),
            names.service(),
            names.server_dns_names(),
            Usage::Server,
            gateway_ca,
        ),
        (
            "client",
            spec.platform
                .client_certificate
                .secret_name
                .clone()
                .map(|n| UserTls {
                    name: n,
                    format: spec.platform.client_certificate.secret_format,
                    passphrase: spec
                        .platform
                        .client_certificate
                        .key_passphrase_secret
                        .clone(),
                }),
            names.client_tls(),
            names.client_common_name(),
            Vec::new(),
            Usage::Client,
            tunnel_ca,
        ),
    ];
    // Both leaves at once: each is a read and an apply the other does not wait for.
    let made = futures::future::try_join_all(leaves.into_iter().map(
        |(label, given, issued_name, cn, dns, usage, issuer)| async move {
            match given {
                Some(tls) => Ok(user_certificate(ctx, &names.namespace, &tls)
                    .await?
                    .map(|s| (s, None))),
                None => {
                    let leaf = IssueRequest {
                        label,
                        secret: issued_name,
                        common_name: cn,
                        dns,
                        usage,
                        lifetime,
                    };
                    let (s, renew_at) =
                        ensure_leaf(ctx, gw, names, issuer, &leaf, now, made).await?;
                    Ok::<_, Error>(Ok((s, Some(renew_at))))
                }
            }
        },
    ))
    .await?;
    let mut out = Vec::new();
    for leaf in made {
        match leaf {
            Ok((status, renew_at)) => {
                if let Some(at) = renew_at {
                    *next = (*next).min(at);
                }
                out.push(status);
            }
            Err(p) => return Ok(Err(p)),
        }
    }
    let seconds = |t: &str| t.parse::<k8s_openapi::jiff::Timestamp>().ok();
    for s in &out {
        let renewal = s.renewal_time.as_deref().and_then(seconds);
        if let Some(not_after) = seconds(&s.not_after) {
            ctx.metrics.certificate(
                &names.namespace,
                &names.gateway,
                &s.name,
                not_after.as_second(),
                renewal.map(|t| t.as_second()),
            );
        }
    }
    Ok(Ok(out))
}

/// An issued leaf the operator manages.
struct IssueRequest {
    label: &'static str,
    secret: String,
    common_name: String,
    dns: Vec<String>,
    usage: Usage,
    lifetime: Lifetime,
}

async fn ensure_leaf(
    ctx: &Context,
    gw: &EdgeGateway,
    names: &Names,
    issuer: &IssuingCa,
    req: &IssueRequest,
    now: i64,
    made: &Made,
) -> Result<(CertificateStatus, i64), Error> {
    let (ca, bundle) = (&issuer.ca, issuer.bundle.as_str());
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let existing = ctx
        .children
        .get(&api, &names.namespace, &req.secret)
        .await?;
    let pair = existing
        .as_ref()
        .and_then(|s| Some((secret_text(s, "tls.crt")?, secret_text(s, "tls.key")?)));
    let decision = certs::decide_leaf(
        pair.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        ca,
        &req.dns,
        req.usage,
        req.lifetime,
        now,
    );
    let (cert, key) = match (decision, pair) {
        (LeafDecision::Keep { .. }, Some(pair)) => pair,
        (d, _) => {
            let why = match d {
                LeafDecision::Issue(why) => why,
                LeafDecision::Keep { .. } => "Missing",
            };
            let issued = ca.issue(
                &req.common_name,
                &req.dns,
                req.usage,
                gw.spec.certificates.key_algorithm,
                now,
                req.lifetime.duration,
            )?;
            ctx.metrics.certs_issued.inc();
            let (reason, verb) = if why == "Missing" {
                ("CertificateIssued", "issued")
            } else {
                ("CertificateRenewed", "renewed")
            };
            made.add(
                reason,
                format!(
                    "{verb} {} certificate in Secret {} ({why}), valid until {}",
                    req.label,
                    req.secret,
                    certs::rfc3339(issued.not_after)
                ),
                &req.secret,
            );
            (issued.cert_pem, issued.key_pem)
        }
    };
    let info = certs::inspect(&cert)?;
    let renew_at = req.lifetime.renewal_time(info.not_before, info.not_after);
    ctx.children
        .apply(
            &api,
            &resources::tls_secret(gw, names, req.secret.clone(), &cert, &key, bundle),
        )
        .await?;
    Ok((
        CertificateStatus {
            name: req.label.into(),
            secret_name: req.secret.clone(),
            not_after: certs::rfc3339(info.not_after),
            renewal_time: Some(certs::rfc3339(renew_at)),
        },
        renew_at,
    ))
}

/// Reads a user-provided TLS Secret (e.g. cert-manager's) without changing it.
/// A user-supplied TLS Secret: its name, how it holds the key, and the key's passphrase.
struct UserTls {
    name: String,
    format: KeyFormat,
    passphrase: Option<SecretKeyRef>,
}

async fn user_certificate(
    ctx: &Context,
    ns: &str,
    tls: &UserTls,
) -> Result<Result<CertificateStatus, Problem>, Error> {
    let name = tls.name.as_str();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = api
        .get_opt(name)
        .await
        .map_err(kube_err("get", "Secret", name))?
    else {
        return Ok(Err(Problem::new(
            "SecretNotFound",
            format!("TLS Secret {ns}/{name} not found"),
        )));
    };
    let leaf = match tls.format {
        KeyFormat::Pem => {
            let (Some(cert), Some(_)) = (
                secret_text(&secret, "tls.crt"),
                secret_text(&secret, "tls.key"),
            ) else {
                return Ok(Err(Problem::new(
                    "InvalidSecret",
                    format!("TLS Secret {ns}/{name} needs tls.crt and tls.key"),
                )));
            };
            certs::inspect(&cert)
        }
        KeyFormat::Pkcs12 => {
            let Some(bundle) = secret.data.as_ref().and_then(|d| d.get("keystore.p12")) else {
                return Ok(Err(Problem::new(
                    "InvalidSecret",
                    format!("TLS Secret {ns}/{name} needs keystore.p12"),
                )));
            };
            // The passphrase's own Secret is checked (present, has the key) with the other
            // references; a missing one reads as empty here and fails the integrity check.
            let passphrase = match &tls.passphrase {
                Some(r) => api
                    .get_opt(&r.name)
                    .await
                    .map_err(kube_err("get", "Secret", &r.name))?
                    .and_then(|s| secret_text(&s, &r.key))
                    .map(|t| t.lines().next().unwrap_or_default().to_owned())
                    .unwrap_or_default(),
                None => String::new(),
            };
            match edgeway_runtime::tls::pkcs12::open_bytes(&bundle.0, &passphrase) {
                Ok((_, chain)) if !chain.is_empty() => certs::inspect_der(&chain[0]),
                Ok(_) => {
                    return Ok(Err(Problem::new(
                        "InvalidSecret",
                        format!("TLS Secret {ns}/{name}: keystore.p12 holds no certificate"),
                    )))
                }
                Err(e) => {
                    return Ok(Err(Problem::new(
                        "InvalidSecret",
                        format!("TLS Secret {ns}/{name}: keystore.p12 {e}"),
                    )))
                }
            }
        }
    };
    Ok(match leaf {
        Ok(info) => Ok(CertificateStatus {
            name: "server".into(),
            secret_name: name.into(),
            not_after: certs::rfc3339(info.not_after),
            renewal_time: None,
        }),
        Err(e) => Err(Problem::new(
            "InvalidSecret",
            format!("TLS Secret {ns}/{name}: {e}"),
        )),
    })
}

/// Generates basic-auth credentials once when basic is enabled without a users Secret.
pub async fn ensure_basic_credentials(
    ctx: &Context,
    gw: &EdgeGateway,
    names: &Names,
    made: &Made,
) -> Result<(), Error> {
    let server = &gw.spec.server;
    let wanted = server
        .auth_methods
        .contains(&edgeway_sidecar::config::AuthMethodName::Basic)
        && server
            .basic_auth
            .as_ref()
            .and_then(|b| b.users_secret.as_ref())
            .is_none();
    if !wanted {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let name = names.basic_auth();
    let existing = ctx.children.get(&api, &names.namespace, &name).await?;
    let kept = existing.as_ref().and_then(|s| {
        Some((
            secret_text(s, "password")?,
            secret_text(s, resources::BASIC_USERS_KEY)?,
        ))
    });
    let (password, users) = match kept {
        Some(pair) => pair,
        None => {
            let pair = resources::generate_basic_credentials()
                .map_err(|e| Error::Credentials(e.to_string()))?;
            made.add(
                "CredentialsGenerated",
                format!(
                    "generated basic-auth credentials in Secret {name} (keys username, password)"
                ),
                &name,
            );
            pair
        }
    };
    ctx.children
        .apply(
            &api,
            &resources::basic_auth_secret(gw, names, &password, &users),
        )
        .await?;
    Ok(())
}
