//! Which events `log` shows: upstream's step ranges (`--step`), its filter expressions
//! (`--filter '.toolCalls[].skillName == "base"'`), the type presets, paging and context
//! (PERSTACK-REGISTRY-LOG-START.md §3.3).

use serde_json::Value;

use super::LogError;

/// `--step`: `N`, `>N`, `>=N`, `<N`, `<=N` or `A-B` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepFilter {
    /// Exactly this step.
    Is(u64),
    /// Above.
    Above(u64),
    /// At or above.
    AtLeast(u64),
    /// Below.
    Below(u64),
    /// At or below.
    AtMost(u64),
    /// From A to B.
    Range(u64, u64),
}

impl StepFilter {
    /// Parses `--step`.
    pub(crate) fn parse(text: &str) -> Result<StepFilter, LogError> {
        let bad = || LogError::StepFilter(text.to_string());
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
        let t = text.trim();
        let filter = if let Some(n) = t.strip_prefix(">=") {
            StepFilter::AtLeast(number(n)?)
        } else if let Some(n) = t.strip_prefix("<=") {
            StepFilter::AtMost(number(n)?)
        } else if let Some(n) = t.strip_prefix('>') {
            StepFilter::Above(number(n)?)
        } else if let Some(n) = t.strip_prefix('<') {
            StepFilter::Below(number(n)?)
        } else if let Some((a, b)) = t.split_once('-') {
            let (min, max) = (number(a)?, number(b)?);
            if min > max {
                return Err(LogError::StepRange { min, max });
            }
            StepFilter::Range(min, max)
        } else {
            StepFilter::Is(number(t)?)
        };
        Ok(filter)
    }

    /// Whether step `n` passes.
    pub(crate) fn matches(self, n: u64) -> bool {
        match self {
            StepFilter::Is(m) => n == m,
            StepFilter::Above(m) => n > m,
            StepFilter::AtLeast(m) => n >= m,
            StepFilter::Below(m) => n < m,
            StepFilter::AtMost(m) => n <= m,
            StepFilter::Range(a, b) => (a..=b).contains(&n),
        }
    }
}

/// A comparison operator of `--filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

/// `--filter`: `.path.to[].field OP value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FilterExpr {
    path: Vec<String>,
    op: Op,
    value: Value,
}

impl FilterExpr {
    /// Parses an expression; the value is `true`/`false`, a quoted string, a number, else text.
    pub(crate) fn parse(text: &str) -> Result<FilterExpr, LogError> {
        let bad = || LogError::Filter(text.to_string());
        let t = text.trim();
        let rest = t.strip_prefix('.').ok_or_else(bad)?;
        let path_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']')))
            .ok_or_else(bad)?;
        let (path, tail) = rest.split_at(path_end);
        let first = path.chars().next().ok_or_else(bad)?;
        if !(first.is_ascii_alphabetic() || first == '_') {
            return Err(bad());
        }
        let tail = tail.trim_start();
        let (op, value) = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            (">", Op::Gt),
            ("<", Op::Lt),
        ]
        .into_iter()
        .find_map(|(s, op)| tail.strip_prefix(s).map(|v| (op, v.trim())))
        .ok_or_else(bad)?;
        if value.is_empty() {
            return Err(bad());
        }
        Ok(FilterExpr {
            path: path.split('.').map(str::to_string).collect(),
            op,
            value: literal(value),
        })
    }

    /// Whether `event` matches: a missing field never does; over an array (`[]`), any element.
    pub(crate) fn matches(&self, event: &Value) -> bool {
        let mut values = vec![event.clone()];
        for segment in &self.path {
            let (name, spread) = match segment.strip_suffix("[]") {
                Some(name) => (name, true),
                None => (segment.as_str(), false),
            };
            values = values
                .into_iter()
                .filter_map(|v| v.get(name).cloned())
                .flat_map(|v| match (spread, v) {
                    (true, Value::Array(items)) => items,
                    (true, _) => Vec::new(),
                    (false, v) => vec![v],
                })
                .collect();
        }
        values.iter().any(|v| match v {
            Value::Array(items) => items.iter().any(|i| self.compare(i)),
            other => self.compare(other),
        })
    }

    fn compare(&self, found: &Value) -> bool {
        match self.op {
            Op::Eq => found == &self.value,
            Op::Ne => found != &self.value,
            op => match (found.as_f64(), self.value.as_f64()) {
                (Some(a), Some(b)) => match op {
                    Op::Ge => a >= b,
                    Op::Le => a <= b,
                    Op::Gt => a > b,
                    _ => a < b,
                },
                _ => false,
            },
        }
    }
}

fn literal(text: &str) -> Value {
    match text {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    for quote in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(quote).and_then(|t| t.strip_suffix(quote)) {
            return Value::String(inner.to_string());
        }
    }
    match text.parse::<f64>() {
        Ok(n) if n.fract() == 0.0 && n.abs() < 9e15 => Value::from(n as i64),
        Ok(n) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
        Err(_) => Value::String(text.to_string()),
    }
}

/// The event types of `--errors`.
pub(crate) const ERROR_TYPES: [&str; 2] = ["stopRunByError", "retry"];
/// The event types of `--tools`.
pub(crate) const TOOL_TYPES: [&str; 3] = ["callTools", "resolveToolResults", "callInteractiveTool"];
/// The event types of `--delegations`.
pub(crate) const DELEGATION_TYPES: [&str; 2] = ["callDelegate", "stopRunByDelegate"];
/// Streamed deltas: many per step and only pieces of what the step's events hold whole; listed
/// only when `--type` names one.
pub(crate) const DELTA_TYPES: [&str; 2] = ["streamReasoning", "streamRunResult"];

/// Every filter of one `log` command.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    /// `--step`.
    pub step: Option<StepFilter>,
    /// `--type`.
    pub event_type: Option<String>,
    /// `--errors`, `--tools`, `--delegations`: the union of their types.
    pub presets: Vec<&'static str>,
    /// `--filter`.
    pub expr: Option<FilterExpr>,
}

impl Filters {
    /// Whether `event` passes every filter.
    pub(crate) fn matches(&self, event: &Value) -> bool {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let step = event.get("stepNumber").and_then(Value::as_u64).unwrap_or(0);
        self.step.is_none_or(|s| s.matches(step))
            && match &self.event_type {
                Some(t) => t == kind,
                None => !DELTA_TYPES.contains(&kind),
            }
            && (self.presets.is_empty() || self.presets.contains(&kind))
            && self.expr.as_ref().is_none_or(|e| e.matches(event))
    }
}

/// The events shown: their indexes in `all`, after filtering, paging (`take` 0 = all) and
/// context (±`context` unfiltered neighbours of each shown one). Gives the count before paging.
pub(crate) fn select(
    all: &[Value],
    filters: &Filters,
    offset: usize,
    take: usize,
    context: usize,
) -> (Vec<usize>, usize) {
    let matched: Vec<usize> = (0..all.len())
        .filter(|&i| filters.matches(&all[i]))
        .collect();
    let total = matched.len();
    let page = matched.into_iter().skip(offset);
    let page: Vec<usize> = if take == 0 {
        page.collect()
    } else {
        page.take(take).collect()
    };
    if context == 0 {
        return (page, total);
    }
    let mut shown: Vec<usize> = page
        .iter()
        .flat_map(|&i| i.saturating_sub(context)..=(i + context).min(all.len().saturating_sub(1)))
        .collect();
    shown.sort_unstable();
    shown.dedup();
    (shown, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn step_filters_take_upstreams_forms_and_refuse_the_rest() {
        let cases = [
            ("3", [false, true, false]),
            (">3", [false, false, true]),
            (">=3", [false, true, true]),
            ("<3", [true, false, false]),
            ("<=3", [true, true, false]),
            ("2-3", [true, true, false]),
        ];
        for (text, want) in cases {
            let filter = StepFilter::parse(text).expect(text);
            let got: Vec<bool> = [2, 3, 4].iter().map(|&n| filter.matches(n)).collect();
            assert_eq!(got, want, "{text}");
        }
        assert_eq!(
            StepFilter::parse("x").expect_err("bad").to_string(),
            "Invalid step filter: x"
        );
        assert_eq!(
            StepFilter::parse("10-5").expect_err("bad").to_string(),
            "Invalid step range: 10-5 (min 10 > max 5)"
        );
    }

    #[test]
    fn filter_expressions_follow_paths_arrays_and_types() {
        let event = json!({
            "type": "callTools", "stepNumber": 3,
            "toolCalls": [{"skillName": "base", "toolName": "readTextFile"}, {"skillName": "user", "toolName": "askUser"}],
            "checkpoint": {"status": "proceeding"}
        });
        let yes = [
            ".stepNumber > 1",
            ".stepNumber == 3",
            ".type == \"callTools\"",
            ".toolCalls[].skillName == 'user'",
            ".toolCalls[].toolName != \"askUser\"",
            ".checkpoint.status == proceeding",
        ];
        for text in yes {
            assert!(
                FilterExpr::parse(text).expect(text).matches(&event),
                "{text}"
            );
        }
        let no = [
            ".stepNumber < 3",
            ".stepNumber == \"3\"",
            ".missing == 1",
            ".toolCalls[].skillName == \"web\"",
            ".type > 1",
        ];
        for text in no {
            assert!(
                !FilterExpr::parse(text).expect(text).matches(&event),
                "{text}"
            );
        }
        for bad in [
            "stepNumber > 1",
            ".stepNumber",
            ".stepNumber ~ 1",
            ". == 1",
            ".1a == 2",
        ] {
            let error = FilterExpr::parse(bad).expect_err(bad).to_string();
            assert!(
                error.starts_with(&format!("Invalid filter expression: {bad}\n")),
                "{error}"
            );
        }
    }

    #[test]
    fn paging_counts_before_it_and_context_adds_unfiltered_neighbours() {
        let all: Vec<Value> = (1..=8)
            .map(|n| json!({"type": if n % 3 == 0 { "callTools" } else { "startGeneration" }, "stepNumber": n}))
            .collect();
        let tools = Filters {
            presets: TOOL_TYPES.to_vec(),
            ..Filters::default()
        };
        assert_eq!(select(&all, &tools, 0, 100, 0), (vec![2, 5], 2));
        assert_eq!(select(&all, &tools, 1, 1, 0), (vec![5], 2));
        assert_eq!(select(&all, &tools, 0, 1, 1), (vec![1, 2, 3], 2));
        assert_eq!(select(&all, &Filters::default(), 2, 0, 0).0.len(), 6);
    }
}
