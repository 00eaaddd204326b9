//! Values of the run's limit flags (`--memory`, `--cpus`, `--timeout`, `--generation-timeout`), parsed
//! with the same
//! rules `[sandbox]` uses, so a flag and the file accept the same spellings.

use std::time::Duration;

use super::patterns::parse_memory_size;

/// Docker refuses a memory limit below 6 MiB; better to say so before anything starts.
pub(crate) const MIN_MEMORY_BYTES: u64 = 6 << 20;

/// `--memory`: a size like `512m`, `2g` or a number of bytes, at least 6m.
pub(crate) fn parse_memory_limit(s: &str) -> Result<i64, String> {
    let bytes = parse_memory_size(s).ok_or_else(|| {
        format!("\"{s}\" is not a memory size; expected a number of bytes or a number with k, m, g or t, like 512m or 2g")
    })?;
    if bytes < MIN_MEMORY_BYTES {
        return Err(format!(
            "\"{s}\" is below Docker's minimum memory limit of 6m"
        ));
    }
    i64::try_from(bytes).map_err(|_| format!("\"{s}\" is too large"))
}

/// `--cpus`: a number of CPUs greater than 0, like `2` or `0.5`.
pub(crate) fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(cpus) if cpus.is_finite() && cpus > 0.0 => Ok(cpus),
        _ => Err(format!(
            "\"{s}\" is not a number of CPUs greater than 0, like 2 or 0.5"
        )),
    }
}

/// `--timeout` and `--generation-timeout`: `500ms`, `90s`, `30m`, `2h`, or a bare number of
/// milliseconds (Perstack's spelling, `--timeout 60000`); more than zero.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let trimmed = s.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let bad = || {
        format!(
            "\"{s}\" is not a duration; expected milliseconds like 60000, or 90s, 30m, 2h, 500ms"
        )
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(format!("\"{s}\": a time limit must be more than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_flags_take_dockers_sizes_and_refuse_what_docker_would() {
        assert_eq!(parse_memory_limit("64m"), Ok(64 << 20));
        assert_eq!(parse_memory_limit("2g"), Ok(2 << 30));
        assert_eq!(
            parse_memory_limit("1m"),
            Err("\"1m\" is below Docker's minimum memory limit of 6m".into())
        );
        assert!(parse_memory_limit("lots").is_err());
    }

    #[test]
    fn cpus_must_be_a_positive_number() {
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert_eq!(parse_cpus("2"), Ok(2.0));
        for bad in ["0", "-1", "inf", "NaN", "two"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_have_a_unit_or_mean_milliseconds_as_in_perstack() {
        assert_eq!(parse_duration("60000"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "0", "0s", "1.5h", "10d", "-3s", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
