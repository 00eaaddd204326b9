//! Streaming through Docker: deltas reach the caller while the generation is still going.

use std::time::Duration;

use crate::support::{TestRun, finished, read_until, require_docker};

#[test]
fn reasoning_deltas_arrive_before_the_run_ends() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/streaming/perstack.toml", "streamer");
    let mut child = run.spawn();
    // The first chunk shows up while the model is still "typing" (4 s for the whole turn).
    let seen = read_until(&mut child, "\"streamReasoning\"", Duration::from_secs(120));
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        !seen.contains("completeRun"),
        "the run ended first:\n{seen}"
    );
    assert!(
        child.try_wait().expect("poll").is_none(),
        "the controller exited before the stream ended"
    );
    let output = child.wait_with_output().expect("wait");
    let mut stdout = seen.into_bytes();
    stdout.extend_from_slice(&output.stdout);
    let done = finished(output.status.code(), stdout, output.stderr);
    done.assert_code(0);
    let deltas: Vec<&str> = done
        .of_type("streamReasoning")
        .iter()
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert!(deltas.len() >= 12, "{deltas:?}");
    assert_eq!(
        deltas.concat(),
        "one two three four five six seven eight nine ten eleven twelve"
    );
    let complete = &done.of_type("completeStreamingReasoning")[0];
    assert_eq!(complete["text"], deltas.concat());
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}
