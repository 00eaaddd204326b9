//! A first Expert from nothing, as a new user makes it: `init` on a real pseudo-terminal,
//! answered through its questions, then the commands it says to run next, in the folder it wrote,
//! on the mock provider it was told to use.

use std::process::Command;

use crate::support::terminal::Terminal;
use crate::support::{JobGuard, binary, require_docker, test_runtime};

/// Time for `init`, which only asks and writes.
const INIT_MS: u64 = 30_000;
/// Time for the run, the images it builds included.
const RUN_MS: u64 = 300_000;

#[test]
fn init_asks_for_a_first_expert_and_the_run_it_suggests_completes_on_the_mock_provider() {
    if !require_docker() {
        return;
    }
    let guard = JobGuard::new();
    let folder = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let terminal = |args: &[&str]| {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .current_dir(folder.path())
            .env("TERM", "xterm")
            .env("NO_COLOR", "1")
            .env("PERSTACK_SANDBOX_STATE_DIR", state.path())
            .env_remove("ANTHROPIC_API_KEY");
        cmd
    };

    let mut init = Terminal::spawn(terminal(&["init"]), INIT_MS);
    for (question, answer) in [
        ("Expert name [my-expert]: ", "greeter"),
        ("What does it do [", "Greets whoever asks."),
        ("Provider [anthropic]: ", "mock"),
        ("A delegate Expert to add (name, or none) [none]: ", ""),
        ("An MCP server from PyPI (package, or none) [none]: ", ""),
        ("An MCP server from npm (package, or none) [none]: ", ""),
        ("Can it ask you questions mid-run (y/n) [n]: ", ""),
    ] {
        init.expect(question);
        init.type_line(answer);
    }
    init.expect("wrote perstack.toml");
    let shown = init.finish();
    // The mock provider needs no key, so the next steps are validate and run.
    let next: Vec<&str> = shown
        .lines()
        .skip_while(|l| *l != "Next:")
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(
        next,
        [
            "perstack-sandbox validate",
            "perstack-sandbox run greeter \"Say hello\""
        ],
        "{shown}"
    );
    let script = std::fs::read_to_string(folder.path().join("mock-script.toml")).expect("script");
    assert!(script.contains("Hello from greeter!"), "{script}");

    let validated = terminal(&["validate"]).output().expect("validate");
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    // The run as suggested, with this test's job id (so its resources are found) and runtime.
    let mut run = terminal(&["run", "--job-id", &guard.job_id]);
    run.args(
        test_runtime()
            .iter()
            .flat_map(|r| ["--runtime-engine", r.as_str()]),
    )
    .args(["greeter", "Say hello"]);
    let mut run = Terminal::spawn(run, RUN_MS);
    run.expect("I wrote hello.md.");
    let shown = run.finish();
    assert!(shown.contains("completed"), "{shown}");
    assert_eq!(
        std::fs::read_to_string(folder.path().join("hello.md")).expect("hello.md"),
        "Hello from greeter!\n"
    );
    assert!(guard.leftovers().is_empty(), "{:?}", guard.leftovers());
}
