//! The HTTP front end (axum): the web chat page (`GET /`, compiled into the binary, no CDN), the
//! operators' API (`POST /v1/ask`, `GET /v1/charts/{id}.png`), `GET /healthz`, `GET /metrics`
//! (Prometheus text) and `GET /openapi.json` (generated from the handlers' types by utoipa).
//!
//! A thin adapter like the others: it checks the bearer token, validates the body (400 naming the
//! field, 401 without a valid token, 413 over `[serve] max_body_bytes`), calls [`App::handle`] and returns
//! the structured reply as JSON. Operator tokens come only from `DONGCHA_OPERATOR_TOKENS`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{OpenApi, ToSchema};

use crate::app::{self, App, Outcome, Role};

/// Comma-separated operator tokens for the HTTP API and the web page.
pub const TOKENS_ENV: &str = "DONGCHA_OPERATOR_TOKENS";

/// Comma-separated tokens of shops' sites and back ends (`POST /v1/support/messages`): they speak for
/// customers, never for operators.
pub const SHOP_TOKENS_ENV: &str = "DONGCHA_SHOP_TOKENS";

/// The platform name of customers writing through a shop's site or back end.
pub const SITE: &str = "site";

/// The longest question and conversation id taken, in characters.
const MAX_QUESTION_CHARS: usize = 2000;
const MAX_CONVERSATION_ID: usize = 128;

// What the OpenAPI document promises of the fields (spelled again in the schema attributes, which take
// literals only; a test keeps them equal), so that a request valid by the schema is never refused.
/// A conversation or customer id: 1–128 letters, digits, '-' or '_'.
#[cfg(test)]
const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,128}$";
/// A conversation id the customer page was given ([`new_web_conversation`]).
#[cfg(test)]
const WEB_CONVERSATION_PATTERN: &str = "^w[0-9a-f]{32}$";
/// At least one character that is not blank by [`is_blank`]'s definition (the same set, spelled for
/// the regular expressions of clients).
#[cfg(test)]
const NOT_BLANK: &str = "[^\\t-\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]";

/// A text with nothing but white space in it (Unicode's, the information separators and the BOM):
/// what the schema's `NOT_BLANK` pattern refuses.
fn is_blank(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c) || c == '\u{feff}')
}

const PAGE: &str = include_str!("web/index.html");
/// The customers' chat page (`GET /support`): customer service, no sign-in.
const CUSTOMER_PAGE: &str = include_str!("web/support.html");

/// The platform name of customers writing on the customer page.
pub const WEB: &str = "web";

#[derive(Clone)]
struct Http {
    app: Arc<App>,
    /// (token, the operator id derived from it: a hash, never the token itself).
    tokens: Arc<Vec<(String, String)>>,
    /// The same for shop tokens.
    shops: Arc<Vec<(String, String)>>,
    /// The platform customers of `POST /v1/support/messages` are kept under ([`SITE`]; benches use
    /// their own).
    site: &'static str,
    /// Messages per peer address on the public customer page, and its polls.
    public_limiter: Arc<governor::DefaultKeyedRateLimiter<String>>,
    poll_limiter: Arc<governor::DefaultKeyedRateLimiter<String>>,
}

/// Operator tokens from the environment (empty entries dropped).
pub fn tokens_from_env() -> Vec<String> {
    list_env(TOKENS_ENV)
}

fn list_env(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The id a token is known by in the store and the logs (`op-…` for operators, `shop-…` for shops),
/// never the token itself.
pub fn token_id(prefix: &str, token: &str) -> String {
    format!(
        "{prefix}-{:08x}",
        xxhash_rust::xxh3::xxh3_64(token.as_bytes()) as u32
    )
}

/// The routes, over `app`, accepting `tokens` as operators (and `DONGCHA_SHOP_TOKENS` as shops).
pub fn router(app: Arc<App>, tokens: Vec<String>) -> Router {
    router_with(app, tokens, list_env(SHOP_TOKENS_ENV), SITE)
}

/// [`router`] with the shop tokens given, and site customers kept under `site`.
pub fn router_with(
    app: Arc<App>,
    tokens: Vec<String>,
    shops: Vec<String>,
    site: &'static str,
) -> Router {
    let limit = app.cfg.serve.max_body_bytes;
    let ids = |tokens: Vec<String>, prefix: &str| -> Vec<(String, String)> {
        tokens
            .into_iter()
            .map(|t| {
                let id = token_id(prefix, &t);
                (t, id)
            })
            .collect()
    };
    let per_minute = |n: u32, burst: u32| {
        let q = governor::Quota::per_minute(
            std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN),
        )
        .allow_burst(std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN));
        Arc::new(governor::DefaultKeyedRateLimiter::keyed(q))
    };
    let s = &app.cfg.serve;
    let public_limiter = per_minute(s.public_rate_per_minute, s.public_rate_burst);
    // The page polls every few seconds; far more than that is not a page.
    let poll_limiter = per_minute(60, 20);
    let state = Http {
        app,
        tokens: Arc::new(ids(tokens, "op")),
        shops: Arc::new(ids(shops, "shop")),
        site,
        public_limiter,
        poll_limiter,
    };
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/ask", post(ask))
        .route("/v1/charts/{file}", get(chart))
        .route("/v1/support/messages", post(support))
        .route("/support", get(customer_page))
        .route("/v1/support/chat", post(customer_chat))
        .route("/v1/support/chat/{conversation}", get(customer_chat_poll))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// `POST /v1/ask` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The operator's question, Chinese or English.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t-\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
    )]
    pub question: String,
    /// Continue this conversation (follow-ups such as "那上个月呢？"); a new one when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub conversation_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TableView {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChartView {
    pub id: String,
    pub title: String,
    /// `GET` this (with the same bearer token) for the PNG.
    pub url: String,
}

/// `POST /v1/ask` answer: the reply as text plus its structure, and the call behind it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AskResponse {
    pub conversation_id: String,
    /// The reply's text (every figure in it comes from `result`).
    pub reply: String,
    /// answered | command | busy | timeout | limited | error | duplicate (a retry: the first reply)
    pub outcome: String,
    /// The tool called ("none" when the question is outside what dongcha answers).
    pub tool: String,
    #[schema(value_type = Object)]
    pub args: Map<String, Value>,
    /// The tool's output (null when no tool ran: a clarifying question, a command, a replay).
    #[schema(value_type = Option<Object>)]
    pub result: Value,
    pub table: Option<TableView>,
    pub chart: Option<ChartView>,
    /// Ids of the reviews the reply cites.
    pub cited_reviews: Vec<i64>,
    /// A question asked back instead of an answer, when the question was ambiguous.
    pub clarify: Option<String>,
    pub lang: String,
    /// Milliseconds per stage (null when the agent was not asked).
    #[schema(value_type = Option<Object>)]
    pub timings_ms: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, naming the field.
    pub error: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub data_version: String,
    /// This process's instance id (several `dongcha serve` processes may share one store).
    pub instance: String,
    /// What this process does that only one process may do at a time (`telegram:poll`,
    /// `telegram:outbox`, `digest:scheduler` …).
    pub leases: Vec<String>,
    /// Background jobs and where each stands, e.g. `sentiment fine-tune`: `running since …`.
    pub jobs: std::collections::BTreeMap<String, String>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dongcha", description = "Customer insight for e-commerce operators, on demand."),
    paths(ask, chart, support, customer_chat, customer_chat_poll, healthz, metrics),
    components(schemas(AskRequest, AskResponse, TableView, ChartView, ErrorBody, Health,
        SupportRequest, SupportResponse, HandoffView, ChatRequest, ChatMessages)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;
impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "shop_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: msg.into() })).into_response()
}

impl Http {
    /// The operator behind the request's bearer token, or why there is none (a 401).
    fn operator(&self, headers: &HeaderMap) -> Result<String, &'static str> {
        bearer(
            headers,
            &self.tokens,
            "missing Authorization: Bearer <operator token> (tokens come from DONGCHA_OPERATOR_TOKENS)",
            "invalid operator token",
        )
    }

    /// The shop behind the request's bearer token (`DONGCHA_SHOP_TOKENS`).
    fn shop(&self, headers: &HeaderMap) -> Result<String, &'static str> {
        bearer(
            headers,
            &self.shops,
            "missing Authorization: Bearer <shop token> (tokens come from DONGCHA_SHOP_TOKENS)",
            "invalid shop token",
        )
    }
}

/// The id of the token in `Authorization: Bearer …` among `tokens`.
fn bearer(
    headers: &HeaderMap,
    tokens: &[(String, String)],
    missing: &'static str,
    invalid: &'static str,
) -> Result<String, &'static str> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(missing);
    };
    let token = v
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    // Compared without an early exit on the first differing byte.
    let found = tokens.iter().find(|(t, _)| {
        t.len() == token.len()
            && t.bytes()
                .zip(token.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0
    });
    match found {
        Some((_, id)) if !token.is_empty() => Ok(id.clone()),
        _ => Err(invalid),
    }
}

/// The request body, or the status and message refusing it (413 over `[serve] max_body_bytes`).
fn read_body(h: &Http, body: Result<Bytes, BytesRejection>) -> Result<Bytes, (StatusCode, String)> {
    match body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes", h.app.cfg.serve.max_body_bytes),
        )),
        Err(e) => Err((e.status(), e.body_text())),
    }
}

impl Http {
    fn count(&self, route: &str, status: StatusCode) {
        self.app
            .metrics
            .http
            .with_label_values(&[route, status.as_str()])
            .inc();
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route (see /openapi.json)")
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz(State(h): State<Http>) -> Response {
    match h.app.store.data_version().await {
        Ok(v) => axum::Json(Health {
            status: "ok".into(),
            data_version: v.0,
            instance: h.app.instance.clone(),
            leases: h.app.leases_held(),
            jobs: h.app.jobs(),
        })
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")),
    }
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(h): State<Http>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.app.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

/// The body as an [`AskRequest`], or a message naming the field that is wrong.
pub fn parse_ask(body: &[u8]) -> Result<AskRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("body must be a JSON object with a `question` field".into());
    };
    if let Some(k) = m
        .keys()
        .find(|k| *k != "question" && *k != "conversation_id")
    {
        return Err(format!(
            "unknown field `{k}` (fields: question, conversation_id)"
        ));
    }
    let question = match m.get("question") {
        None | Some(Value::Null) => return Err("missing field `question`".into()),
        Some(Value::String(s)) if is_blank(s) => {
            return Err("field `question` is empty".into());
        }
        Some(Value::String(s)) if s.chars().count() > MAX_QUESTION_CHARS => {
            return Err(format!(
                "field `question` is longer than {MAX_QUESTION_CHARS} characters"
            ));
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("field `question` must be a string".into()),
    };
    let conversation_id = match m.get("conversation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= MAX_CONVERSATION_ID
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Some(s.clone())
        }
        Some(_) => {
            return Err(format!(
                "field `conversation_id` must be a string of 1–{MAX_CONVERSATION_ID} letters, digits, '-' or '_'"
            ));
        }
    };
    Ok(AskRequest {
        question,
        conversation_id,
    })
}

fn new_conversation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "c{:016x}",
        xxhash_rust::xxh3::xxh3_64(format!("{t}-{n}-{}", std::process::id()).as_bytes())
    )
}

#[utoipa::path(
    post, path = "/v1/ask", request_body = AskRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[A-Za-z0-9_-]{1,128}$",
        description = "the client's id of this request: asked again with the same key and body (a retry after a \
        lost connection), the first answer is returned (outcome `duplicate`) and the question is not answered twice")),
    responses(
        (status = 200, body = AskResponse),
        (status = 400, body = ErrorBody, description = "a field is missing or wrong (the message names it)"),
        (status = 401, body = ErrorBody, description = "missing or invalid operator token"),
        (status = 413, body = ErrorBody, description = "body larger than [serve] max_body_bytes"),
        (status = 409, body = ErrorBody, description = "the same request (Idempotency-Key and body) is being answered right now"),
        (status = 429, body = AskResponse, description = "busy or asking too fast: nothing was answered (or recorded); retry later, with the same Idempotency-Key"),
        (status = 500, body = ErrorBody, description = "the store failed; nothing was answered"),
    ),
    security(("operator_token" = []))
)]
async fn ask(
    State(h): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = ask_inner(&h, &headers, body).await;
    h.count("/v1/ask", r.status());
    r
}

async fn ask_inner(h: &Http, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let operator = match h.operator(headers) {
        Ok(o) => o,
        Err(why) => return error(StatusCode::UNAUTHORIZED, why),
    };
    let body = match read_body(h, body) {
        Ok(b) => b,
        Err((status, why)) => return error(status, why),
    };
    let req = match parse_ask(&body) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let key = match idempotency_key(headers) {
        Ok(k) => k,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    // A request is the operator's key with its body: another token's same key, or the same key with
    // another question, is another request (never given this one's answer).
    let update_id = key.map(|k| {
        let id = format!(
            "{operator}\n{k}\n{}\n{}",
            req.conversation_id.as_deref().unwrap_or_default(),
            req.question
        );
        (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) >> 1) as i64
    });
    let conversation_id = req.conversation_id.unwrap_or_else(new_conversation_id);
    let chat_id = format!("{operator}:{conversation_id}");
    let msg = app::Message {
        platform: app::HTTP_PLATFORM,
        // Conversations are per operator: another token cannot continue this one.
        chat_id,
        user_id: operator.clone(),
        role: Role::Operator,
        text: req.question,
        update_id,
        lang_hint: None,
        reply_to: None,
        customer: None,
        in_response: false,
    };
    let handled = match h.app.handle(msg).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("http ask: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; nothing was answered",
            );
        }
    };
    if handled.outcome == Outcome::Duplicate
        && let Some(u) = update_id
    {
        return replay(h, u, &operator).await;
    }
    let status = match handled.outcome {
        Outcome::Busy | Outcome::Limited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::OK,
    };
    let r = handled.reply;
    let body = AskResponse {
        conversation_id,
        reply: r.text,
        outcome: handled.outcome.as_str().into(),
        tool: handled.tool,
        args: handled.args,
        result: handled.result,
        table: r.table.map(|t| TableView {
            columns: t.columns,
            rows: t.rows,
        }),
        chart: r.chart.map(|c| ChartView {
            url: format!("/v1/charts/{}.png", c.id),
            id: c.id,
            title: c.title,
        }),
        cited_reviews: r.cited_reviews,
        clarify: r.clarify,
        lang: if r.zh { "zh" } else { "en" }.into(),
        timings_ms: serde_json::to_value(handled.timings_ms).unwrap_or(Value::Null),
    };
    (status, axum::Json(body)).into_response()
}

/// The `Idempotency-Key` header, when sent: 1–128 letters, digits, '-' or '_'.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_CONVERSATION_ID
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(Some(k.to_string()))
        }
        _ => Err(format!(
            "header `Idempotency-Key` must be 1–{MAX_CONVERSATION_ID} letters, digits, '-' or '_'"
        )),
    }
}

/// The first answer to a request asked again with the same idempotency key.
async fn replay(h: &Http, update_id: i64, operator: &str) -> Response {
    let stored = h
        .app
        .store
        .stored_reply(app::HTTP_PLATFORM, update_id)
        .await;
    match stored {
        Ok(Some((chat, reply))) if chat.starts_with(&format!("{operator}:")) => {
            // The first request's conversation (a new one was made for it when it named none).
            let conversation_id = chat[operator.len() + 1..].to_string();
            let zh = crate::agent::router::is_chinese(&reply);
            let body = AskResponse {
                conversation_id,
                reply,
                outcome: Outcome::Duplicate.as_str().into(),
                tool: String::new(),
                args: Default::default(),
                result: Value::Null,
                table: None,
                chart: None,
                cited_reviews: Vec::new(),
                clarify: None,
                lang: if zh { "zh" } else { "en" }.into(),
                timings_ms: Value::Null,
            };
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Ok(_) => error(
            StatusCode::CONFLICT,
            "the request with this `Idempotency-Key` is still being answered: retry in a moment",
        ),
        Err(e) => {
            tracing::error!("http ask replay: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; nothing was answered",
            )
        }
    }
}

/// `POST /v1/support/messages` body: a customer's message, from a shop's site or back end.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportRequest {
    /// The shop's own id of the customer (trusted: the shop token vouches for it), when known.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub customer_id: Option<String>,
    /// The conversation (the site's chat session): messages with the same id are one conversation.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub conversation_id: String,
    /// What the customer wrote.
    #[schema(max_length = 2000)]
    pub text: String,
}

/// A handoff to a person, as a field (not words in the reply).
#[derive(Debug, Serialize, ToSchema)]
pub struct HandoffView {
    pub id: i64,
    /// low_confidence | asked_for_person | negative | failed_twice
    pub reason: String,
    /// open: a person owns the conversation; the bot answers nothing until it is released.
    pub status: String,
}

/// `POST /v1/support/messages` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SupportResponse {
    pub conversation_id: String,
    /// The bot's reply; absent while a person owns the conversation.
    pub reply: Option<String>,
    /// The knowledge-base entry the reply is (its id).
    pub source: Option<String>,
    /// Set when the conversation is (or just went) to a person.
    pub handoff: Option<HandoffView>,
    /// Messages for the customer sent since the last request: a person's replies, the note that the
    /// bot answers again.
    pub messages: Vec<String>,
    pub lang: String,
}

/// The body as a [`SupportRequest`], or a message naming the field that is wrong.
pub fn parse_support(body: &[u8]) -> Result<SupportRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("body must be a JSON object with `conversation_id` and `text`".into());
    };
    if let Some(k) = m
        .keys()
        .find(|k| !["customer_id", "conversation_id", "text"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field `{k}` (fields: customer_id, conversation_id, text)"
        ));
    }
    let id = |name: &str, required: bool| -> Result<Option<String>, String> {
        match m.get(name) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(format!("missing field `{name}`")),
            Some(Value::String(s))
                if !s.is_empty()
                    && s.len() <= MAX_CONVERSATION_ID
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(format!(
                "field `{name}` must be a string of 1–{MAX_CONVERSATION_ID} letters, digits, '-' or '_'"
            )),
        }
    };
    let customer_id = id("customer_id", false)?;
    let conversation_id = id("conversation_id", true)?.unwrap_or_default();
    let text = match m.get("text") {
        None | Some(Value::Null) => return Err("missing field `text`".into()),
        Some(Value::String(s)) if s.chars().count() > MAX_QUESTION_CHARS => {
            return Err(format!(
                "field `text` is longer than {MAX_QUESTION_CHARS} characters"
            ));
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("field `text` must be a string".into()),
    };
    Ok(SupportRequest {
        customer_id,
        conversation_id,
        text,
    })
}

#[utoipa::path(
    post, path = "/v1/support/messages", request_body = SupportRequest,
    responses(
        (status = 200, body = SupportResponse),
        (status = 400, body = ErrorBody, description = "a field is missing or wrong (the message names it)"),
        (status = 401, body = ErrorBody, description = "missing or invalid shop token"),
        (status = 413, body = ErrorBody, description = "body larger than [serve] max_body_bytes"),
    ),
    security(("shop_token" = []))
)]
async fn support(
    State(h): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = support_inner(&h, &headers, body).await;
    h.count("/v1/support/messages", r.status());
    r
}

async fn support_inner(
    h: &Http,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let shop = match h.shop(headers) {
        Ok(s) => s,
        Err(why) => return error(StatusCode::UNAUTHORIZED, why),
    };
    let body = match read_body(h, body) {
        Ok(b) => b,
        Err((status, why)) => return error(status, why),
    };
    let req = match parse_support(&body) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    // Conversations are per shop token: another shop cannot continue (or read) this one.
    let chat_id = format!("{shop}:{}", req.conversation_id);
    let user_id = req
        .customer_id
        .as_ref()
        .map(|c| format!("{shop}:customer:{c}"))
        .unwrap_or_else(|| chat_id.clone());
    customer_turn(
        h,
        h.site,
        chat_id,
        user_id,
        req.customer_id,
        req.conversation_id,
        req.text,
    )
    .await
}

/// One customer message through the application layer, answered as a [`SupportResponse`] with the
/// messages waiting for that conversation (a person's replies).
async fn customer_turn(
    h: &Http,
    platform: &'static str,
    chat_id: String,
    user_id: String,
    customer: Option<String>,
    conversation_id: String,
    text: String,
) -> Response {
    let msg = app::Message {
        platform,
        chat_id: chat_id.clone(),
        user_id,
        role: Role::Customer,
        text,
        update_id: None,
        lang_hint: None,
        reply_to: None,
        // The shop's system vouches for its customer (the shop token): the chat is linked to them.
        customer,
        in_response: false,
    };
    let handled = match h.app.handle(msg).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("http support: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; nothing was answered",
            );
        }
    };
    let messages = waiting(h, platform, &chat_id).await;
    let handoff = handled.result.get("handoff").map(|v| HandoffView {
        id: v["id"].as_i64().unwrap_or_default(),
        reason: v["reason"].as_str().unwrap_or_default().to_string(),
        status: v["status"].as_str().unwrap_or("open").to_string(),
    });
    let r = handled.reply;
    let body = SupportResponse {
        conversation_id,
        reply: (!r.text.is_empty()).then_some(r.text),
        source: handled.result["source"].as_str().map(str::to_string),
        handoff,
        messages,
        lang: if r.zh { "zh" } else { "en" }.into(),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The conversation's messages waiting in the outbox (a person's replies, the note that the bot
/// answers again), taken: each is returned once.
async fn waiting(h: &Http, platform: &str, chat_id: &str) -> Vec<String> {
    match h.app.store.outgoing(platform, Some(chat_id), 100).await {
        Ok(out) => {
            for o in &out {
                let _ = h.app.store.mark_outgoing_sent(o.id, None).await;
            }
            out.into_iter().map(|o| o.text).collect()
        }
        Err(e) => {
            tracing::warn!("support outbox: {e}");
            Vec::new()
        }
    }
}

/// `POST /v1/support/chat` body: a message from the customer chat page (no token: anyone may write).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The conversation the server gave this page earlier; absent for a new one.
    #[schema(pattern = "^w[0-9a-f]{32}$")]
    pub conversation_id: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t-\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
    )]
    pub text: String,
}

/// The body as a [`ChatRequest`], or a message naming the field that is wrong.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("body must be a JSON object with a `text` field".into());
    };
    if let Some(k) = m
        .keys()
        .find(|k| !["conversation_id", "text"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field `{k}` (fields: conversation_id, text)"
        ));
    }
    let conversation_id = match m.get("conversation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_web_conversation(s) => Some(s.clone()),
        Some(_) => {
            return Err(
                "field `conversation_id` must be one this server issued (w followed by 32 hex digits)"
                    .into(),
            );
        }
    };
    let text = match m.get("text") {
        None | Some(Value::Null) => return Err("missing field `text`".into()),
        Some(Value::String(s)) if is_blank(s) => {
            return Err("field `text` is empty".into());
        }
        Some(Value::String(s)) if s.chars().count() > MAX_QUESTION_CHARS => {
            return Err(format!(
                "field `text` is longer than {MAX_QUESTION_CHARS} characters"
            ));
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("field `text` must be a string".into()),
    };
    Ok(ChatRequest {
        conversation_id,
        text,
    })
}

/// A conversation id of the customer page: 128 random bits, so one cannot be guessed or continued by
/// anyone but the page it was given to.
fn new_web_conversation() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source");
    format!("w{}", hex::encode(b))
}

fn is_web_conversation(s: &str) -> bool {
    s.len() == 33
        && s.starts_with('w')
        && s[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Who is writing to the public page, for its rate limit: the peer address.
fn peer(ext: &axum::http::Extensions) -> String {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[utoipa::path(
    post, path = "/v1/support/chat", request_body = ChatRequest,
    responses(
        (status = 200, body = SupportResponse),
        (status = 400, body = ErrorBody, description = "a field is missing or wrong (the message names it)"),
        (status = 413, body = ErrorBody, description = "body larger than [serve] max_body_bytes"),
        (status = 429, body = ErrorBody, description = "too many messages from this address; retry later"),
    )
)]
async fn customer_chat(
    State(h): State<Http>,
    ext: axum::http::Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = customer_chat_inner(&h, &ext, body).await;
    h.count("/v1/support/chat", r.status());
    r
}

async fn customer_chat_inner(
    h: &Http,
    ext: &axum::http::Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if h.public_limiter.check_key(&peer(ext)).is_err() {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many messages from this address: please wait a minute",
        );
    }
    let body = match read_body(h, body) {
        Ok(b) => b,
        Err((status, why)) => return error(status, why),
    };
    let req = match parse_chat(&body) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let conversation = req.conversation_id.unwrap_or_else(new_web_conversation);
    customer_turn(
        h,
        WEB,
        conversation.clone(),
        conversation.clone(),
        None,
        conversation,
        req.text,
    )
    .await
}

/// `GET /v1/support/chat/{conversation}`: what a person sent the page's conversation since it last
/// asked (the page polls this).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMessages {
    pub messages: Vec<String>,
}

#[utoipa::path(
    get, path = "/v1/support/chat/{conversation}",
    params(("conversation" = String, Path, description = "the id POST /v1/support/chat returned", pattern = "^w[0-9a-f]{32}$")),
    responses((status = 200, body = ChatMessages), (status = 400, body = ErrorBody),
        (status = 429, body = ErrorBody))
)]
async fn customer_chat_poll(
    State(h): State<Http>,
    ext: axum::http::Extensions,
    Path(conversation): Path<String>,
) -> Response {
    if !is_web_conversation(&conversation) {
        return error(
            StatusCode::BAD_REQUEST,
            "`conversation` must be one this server issued",
        );
    }
    if h.poll_limiter.check_key(&peer(&ext)).is_err() {
        return error(StatusCode::TOO_MANY_REQUESTS, "polling too often");
    }
    let messages = waiting(&h, WEB, &conversation).await;
    (StatusCode::OK, axum::Json(ChatMessages { messages })).into_response()
}

async fn customer_page() -> Response {
    ([(header::CACHE_CONTROL, "no-cache")], Html(CUSTOMER_PAGE)).into_response()
}

#[utoipa::path(
    get, path = "/v1/charts/{file}",
    params(("file" = String, Path, description = "the chart's id followed by .png")),
    responses((status = 200, content_type = "image/png"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("operator_token" = []))
)]
async fn chart(State(h): State<Http>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    if let Err(why) = h.operator(&headers) {
        return error(StatusCode::UNAUTHORIZED, why);
    }
    let id = file.strip_suffix(".png").unwrap_or(&file);
    match h.app.chart(id) {
        Some(c) => (
            [(header::CONTENT_TYPE, "image/png")],
            c.png.as_ref().clone(),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no chart {id:?} (charts are kept for the latest replies)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// schemathesis found that a question of white space only, and a conversation id the page was
    /// never given, are valid by the document but refused: the document now says what is refused.
    #[test]
    fn the_openapi_document_refuses_what_the_handlers_refuse() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schema = |name: &str| doc["components"]["schemas"][name].clone();
        let max = Value::from(MAX_QUESTION_CHARS);
        for (body, field, key, want) in [
            ("AskRequest", "question", "pattern", NOT_BLANK.into()),
            ("AskRequest", "question", "maxLength", max.clone()),
            (
                "AskRequest",
                "conversation_id",
                "pattern",
                ID_PATTERN.into(),
            ),
            ("ChatRequest", "text", "pattern", NOT_BLANK.into()),
            ("ChatRequest", "text", "maxLength", max.clone()),
            (
                "ChatRequest",
                "conversation_id",
                "pattern",
                WEB_CONVERSATION_PATTERN.into(),
            ),
            (
                "SupportRequest",
                "conversation_id",
                "pattern",
                ID_PATTERN.into(),
            ),
            (
                "SupportRequest",
                "customer_id",
                "pattern",
                ID_PATTERN.into(),
            ),
            ("SupportRequest", "text", "maxLength", max),
        ] {
            assert_eq!(
                schema(body)["properties"][field][key],
                want,
                "{body}.{field} {key}"
            );
        }
        // Unknown fields are refused by name, and the document says so.
        for body in ["AskRequest", "ChatRequest", "SupportRequest"] {
            assert_eq!(schema(body)["additionalProperties"], false, "{body}");
        }
        let poll = &doc["paths"]["/v1/support/chat/{conversation}"]["get"]["parameters"][0];
        assert_eq!(poll["schema"]["pattern"], WEB_CONVERSATION_PATTERN);
        assert_eq!(
            format!("{}", MAX_CONVERSATION_ID),
            ID_PATTERN
                .split(['{', '}'])
                .nth(1)
                .unwrap()
                .split(',')
                .nth(1)
                .unwrap()
        );
        // The pattern's class and is_blank agree on every character that matters.
        let not_blank = regex::Regex::new(NOT_BLANK).unwrap();
        for c in (0u32..0x3100)
            .chain(0xfe00..0x10000)
            .filter_map(char::from_u32)
        {
            let s = c.to_string();
            assert_eq!(not_blank.is_match(&s), !is_blank(&s), "U+{:04X}", c as u32);
        }
        let web = regex::Regex::new(WEB_CONVERSATION_PATTERN).unwrap();
        assert!(web.is_match(&new_web_conversation()));
        assert!(is_web_conversation(&new_web_conversation()));
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_field() {
        let cases: [(&str, &str); 8] = [
            ("", "not JSON"),
            ("[1]", "JSON object"),
            ("{}", "missing field `question`"),
            (r#"{"question": 3}"#, "`question` must be a string"),
            (r#"{"question": "  "}"#, "`question` is empty"),
            (
                r#"{"question": "q", "conversation_id": 5}"#,
                "`conversation_id`",
            ),
            (
                r#"{"question": "q", "conversation_id": "a b"}"#,
                "`conversation_id`",
            ),
            (
                r#"{"question": "q", "tool": "churn_risk"}"#,
                "unknown field `tool`",
            ),
        ];
        for (body, want) in cases {
            let e = parse_ask(body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        let ok = parse_ask(br#"{"question": "sales?", "conversation_id": "c-1"}"#).unwrap();
        assert_eq!(ok.conversation_id.as_deref(), Some("c-1"));
    }

    #[test]
    fn the_openapi_document_lists_the_api() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for p in [
            "/v1/ask",
            "/v1/charts/{file}",
            "/v1/support/messages",
            "/healthz",
            "/metrics",
        ] {
            assert!(doc["paths"][p].is_object(), "{p}");
        }
        assert!(doc["components"]["schemas"]["AskRequest"]["properties"]["question"].is_object());
    }
}
