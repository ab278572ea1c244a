//! The activation page (DESIGN §10): with `--http-listen`, the daemon serves
//! `/activate?token=…`, the address an invitation's URL points at. It checks the token
//! without consuming it and tells the invitee what to run on the host (activation itself
//! stays on the host, where the peer credentials are). A token that is not valid — unknown,
//! used, revoked, expired — gets its own plain sentence and nothing about any
//! organization: the page tells nothing to anyone without a valid token.
//!
//! Plain HTML and CSS, no script, no third-party assets; `Cache-Control: no-store`,
//! `Referrer-Policy: no-referrer` and a content security policy that allows nothing but
//! the page's own style. Each client address may ask a few times a minute.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use maud::{html, Markup, DOCTYPE};
use tokio_util::sync::CancellationToken;

use crate::clock::{rfc3339, Clock};
use crate::rules::invitations::{preview, Preview};
use crate::store::ReadSide;

/// How often one client address may ask: a person opening their link, reloading it, and
/// a few typos; not someone trying tokens.
pub const PER_MINUTE: u32 = 20;

/// What the page reads from.
struct Page {
    store: ReadSide,
    clock: Arc<dyn Clock>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

/// Serves the page on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: ReadSide,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let quota = Quota::per_minute(NonZeroU32::new(PER_MINUTE).unwrap_or(NonZeroU32::MIN));
    let page = Arc::new(Page {
        store,
        clock,
        limiter: RateLimiter::keyed(quota),
    });
    let app = Router::new()
        .route("/activate", get(activate))
        .fallback(not_found)
        .with_state(page);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await;
    if let Err(err) = served {
        tracing::error!(error = %err, "the activation page stopped");
    }
}

async fn activate(
    State(page): State<Arc<Page>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if page.limiter.check_key(&peer.ip()).is_err() {
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            html! { p { "This address was asked too often. Try again in a minute." } },
        );
    }
    let token = query.get("token").cloned().unwrap_or_default();
    let now = page.clock.now();
    let store = page.store.clone();
    let previewed = tokio::task::spawn_blocking(move || {
        let snapshot = store.read()?;
        preview(&snapshot, &token, now)
    })
    .await;
    match previewed {
        Ok(Ok(found)) => shown(&found),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "the activation page cannot read the store");
            unavailable()
        }
        Err(err) => {
            tracing::error!(error = %err, "the activation page's read failed");
            unavailable()
        }
    }
}

/// The page for what the token turned out to be.
fn shown(found: &Preview) -> Response {
    match found {
        Preview::Valid {
            org,
            email,
            role,
            expires_at,
            access_until,
            redeemer,
        } => answer(
            StatusCode::OK,
            "Accept your invitation",
            html! {
                p.lead {
                    "You are invited to " strong { (org) } " as " strong { (role.as_str()) }
                    ", as " strong { (email) } "."
                }
                p {
                    "This invitation can be accepted until "
                    span.when { (when(*expires_at)) } "."
                }
                @if let Some(until) = access_until {
                    p { "Your access will end by itself at " span.when { (when(*until)) } "." }
                }
                h2 { "To accept it" }
                ol {
                    @match redeemer {
                        Some(user) => li {
                            "Log in to the host as the Unix user " code { (user) }
                            ": this invitation is for that user only."
                        },
                        None => li { "Log in to the host as your own Unix user." },
                    }
                    li { "Run this command:" pre { code { "compartment activate" } } }
                    li { "When it asks for the URL, paste this page's address." }
                }
                p.note {
                    "Keep this address to yourself: it works once, and only for you."
                }
            },
        ),
        Preview::Expired => refused(
            StatusCode::GONE,
            "This invitation link has expired",
            "Ask whoever invited you to send a new one.",
        ),
        Preview::Used => refused(
            StatusCode::GONE,
            "This invitation link has already been used",
            "If it was not you who used it, tell whoever invited you.",
        ),
        Preview::Revoked => refused(
            StatusCode::GONE,
            "This invitation link was replaced or revoked",
            "Use the newest link you were sent, or ask for a new one.",
        ),
        Preview::Unknown => refused(
            StatusCode::NOT_FOUND,
            "This invitation link is not valid",
            "Check that the whole address was copied, up to its last character.",
        ),
    }
}

/// A time as the page shows it: to the minute, in UTC, said so.
fn when(at: crate::store::Millis) -> String {
    let text = rfc3339(at);
    // `2026-12-14T05:42:50Z` → `2026-12-14 05:42 UTC`.
    match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => text,
    }
}

fn refused(status: StatusCode, title: &str, what_to_do: &str) -> Response {
    answer(status, title, html! { p { (what_to_do) } })
}

fn unavailable() -> Response {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "The invitation cannot be checked now",
        "Try again in a moment.",
    )
}

async fn not_found() -> Response {
    refused(
        StatusCode::NOT_FOUND,
        "Nothing here",
        "Open the link from your invitation.",
    )
}

/// The whole page, with the headers that keep it out of caches, referrers and frames.
fn answer(status: StatusCode, title: &str, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Compartment" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                main {
                    p.brand { "Compartment" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    let mut response = (status, Html(page.into_string())).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Readable on a phone and on a desk, light or dark; nothing fetched.
const STYLE: &str = "
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #fafafa; --muted: #5f6368; --box: #eef1f4; }
@media (prefers-color-scheme: dark) { :root { --fg: #e8eaed; --bg: #17181a; --muted: #a0a4a8; --box: #25272a; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 17px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
main { max-width: 34rem; margin: 0 auto; padding: 2rem 1.25rem 3rem; }
.brand { color: var(--muted); font-size: .9rem; letter-spacing: .08em; text-transform: uppercase; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: .5rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.75rem 0 .5rem; }
.lead { font-size: 1.1rem; }
ol { padding-left: 1.4rem; }
li { margin: .5rem 0; }
pre { background: var(--box); padding: .75rem 1rem; border-radius: .5rem; overflow-x: auto; margin: .5rem 0; }
code { font: .95em ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; }
.note { color: var(--muted); font-size: .95rem; margin-top: 2rem; }
.when { white-space: nowrap; }
";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use compartmentctl::wire::Role;

    fn body_of(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn each_kind_of_token_has_its_status_and_only_a_valid_one_names_anything() {
        let valid = Preview::Valid {
            org: "acme<b>".into(),
            email: "a@example.com".into(),
            role: Role::Deployer,
            expires_at: 1_796_601_600_000,
            access_until: None,
            redeemer: Some("bob".into()),
        };
        let (status, body) = body_of(shown(&valid));
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("acme&lt;b&gt;"), "escaped: {body}");
        assert!(body.contains("<code>bob</code>"), "{body}");
        assert!(body.contains("2026-12-07 00:00 UTC"), "{body}");
        assert!(!body.contains("<script"), "{body}");
        for (preview, expected) in [
            (Preview::Expired, StatusCode::GONE),
            (Preview::Used, StatusCode::GONE),
            (Preview::Revoked, StatusCode::GONE),
            (Preview::Unknown, StatusCode::NOT_FOUND),
        ] {
            let response = shown(&preview);
            let headers = response.headers().clone();
            assert_eq!(headers[header::CACHE_CONTROL], "no-store");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
            let (status, body) = body_of(response);
            assert_eq!(status, expected, "{preview:?}");
            assert!(!body.contains("acme"), "{preview:?}: {body}");
        }
    }
}
