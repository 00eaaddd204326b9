//! The one HTTP exchange every real provider makes: POST a JSON body, check the status, then
//! read the streamed body piece by piece and hand each complete event to the provider's parser
//! as soon as it arrives.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::LlmError;
use super::sse::{Decoder, Framing, SseEvent};

/// `name` of errors from the provider's HTTP API, as the Vercel AI SDK names them.
pub(super) const API_CALL_ERROR: &str = "AI_APICallError";

/// One streamed request.
#[derive(Debug)]
pub(super) struct StreamRequest<'a> {
    /// Full URL, query included.
    pub url: String,
    /// Headers, the provider's own first, then the user's `[provider.setting] headers`.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: &'a Value,
    /// How the response body is framed.
    pub framing: Framing,
}

/// Sends `request` and feeds every event of the response to `on_event`, in order.
///
/// A non-2xx status becomes an [`LlmError`] with the API's message, the status and the
/// server's `retry-after-ms` / `Retry-After`. A connection that breaks mid-stream is retryable.
pub(super) async fn post_streaming(
    http: &reqwest::Client,
    request: StreamRequest<'_>,
    mut on_event: impl FnMut(SseEvent) -> Result<(), LlmError>,
) -> Result<(), LlmError> {
    let mut call = http.post(&request.url).json(request.body);
    for (name, value) in &request.headers {
        call = call.header(name, value);
    }
    let mut response = call.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let text = response.text().await.unwrap_or_default();
        return Err(LlmError::api(status, error_message(&text), retry_after));
    }
    // A gateway that ignores `stream: true` answers with the whole JSON document; hand it over
    // as one event (each element, for a JSON array) and let the provider read it as such.
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if is_json {
        let text = response.text().await.map_err(transport_error)?;
        let documents = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
            _ => vec![text],
        };
        for data in documents {
            on_event(SseEvent {
                event: String::new(),
                data,
            })?;
        }
        return Ok(());
    }
    let mut decoder = Decoder::new(request.framing);
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        for event in decoder.feed(&chunk) {
            on_event(event)?;
        }
    }
    for event in decoder.finish() {
        on_event(event)?;
    }
    Ok(())
}

/// A request that never got a complete answer.
pub(super) fn transport_error(error: reqwest::Error) -> LlmError {
    LlmError {
        name: API_CALL_ERROR.into(),
        message: format!("request failed: {error}"),
        status_code: None,
        // Refused connections, resets and timeouts are the network's fault, not the request's.
        is_retryable: error.is_timeout()
            || error.is_connect()
            || error.is_request()
            || error.is_body(),
        retry_after: None,
    }
}

/// A chunk that is not the JSON the API documents.
pub(super) fn bad_chunk(provider: &str, data: &str, error: serde_json::Error) -> LlmError {
    LlmError::fatal(
        "AI_JSONParseError",
        format!(
            "{provider} sent a stream chunk that is not valid JSON ({error}): {}",
            truncate(data, 300)
        ),
    )
}

/// The human part of an error body: `error.message` (Anthropic, OpenAI, Gemini), a string
/// `error` (Ollama), else the body itself, shortened.
pub(super) fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let error = if v.is_array() {
            &v[0]["error"]
        } else {
            &v["error"]
        };
        error["message"]
            .as_str()
            .or_else(|| error.as_str())
            .or_else(|| v["message"].as_str())
            .map(str::to_string)
    });
    match from_json {
        Some(message) => message,
        None if body.trim().is_empty() => "the provider answered with an empty body".into(),
        None => truncate(body.trim(), 500),
    }
}

/// How long the server asked us to wait: `retry-after-ms` (OpenAI, Anthropic), else
/// `Retry-After` as seconds or as an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let seconds = |s: &str| s.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0);
    if let Some(ms) = get("retry-after-ms").and_then(seconds) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?;
    if let Some(secs) = seconds(value) {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `s` cut to at most `max` characters.
pub(super) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.insert(*n, HeaderValue::from_str(v).expect("header"));
        }
        map
    }

    #[test]
    fn retry_after_in_seconds_milliseconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "3"), ("retry-after-ms", "1500")]),
                now
            ),
            Some(Duration::from_millis(1500)),
            "retry-after-ms is the more precise one"
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &later)]), now),
            Some(Duration::from_secs(7))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &earlier)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_messages_from_each_vendor_shape() {
        assert_eq!(
            error_message(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            "Overloaded"
        );
        assert_eq!(
            error_message(
                r#"[{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}]"#
            ),
            "Quota exceeded"
        );
        assert_eq!(
            error_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message("Bad Gateway\n"), "Bad Gateway");
        assert_eq!(
            error_message(""),
            "the provider answered with an empty body"
        );
    }
}
