//! `make bench`: how fast a run starts and ends, against the same containers started with the
//! docker CLI, measured in one go on this machine; writes BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench startup -- --binary target/…/release/perstack-sandbox [--out BENCHMARKS.md]
//!     [--runs 10] [--cold-runs 3]
//! ```
//!
//! The Expert is `benches/fixture/perstack.toml`: the mock provider and two skills
//! (`@perstack/base` and the fixture MCP server), so three containers. Measured:
//!
//! - warm start: from spawning `perstack-sandbox run` to reading its `initializeRuntime` line
//!   (the runtime's first event), all images cached;
//! - teardown: from reading the terminal `completeRun` line to the controller's exit (the
//!   runtime exits, every container and volume is removed, the job is written);
//! - cold start: the same with the Expert's images removed first; and the image phase of those
//!   runs, from the first to the last `dockerBuildProgress` line;
//! - image sizes: runtime, skill, base-skill and the egress proxy (built by the `egress` Expert);
//! - tool calls: from reading `callTools` (one call to each skill, at once) to reading
//!   `resolveToolResults`;
//! - gVisor: when the engine has `runsc` registered, each round also runs the Expert with
//!   `--runtime-engine runsc`, so warm start, tool calls and teardown under gVisor stand next to
//!   runc's;
//! - the standalone mode: the Expert built into one image (`build --standalone`) and run with
//!   plain `docker run --rm`, each round, to `initializeRuntime` and to exit, next to the
//!   multi-container runs' same times; and its image size next to the sum of theirs;
//! - baseline: the containers of one of our runs — inspected while it ran — started again with
//!   `docker volume create` and `docker run` (same images, command, user, environment, mounts,
//!   network and hardening flags), to the runtime's first output line; once as a shell script
//!   would (one command after the other) and once with every command at once.
//!
//! Everything the bench creates carries a label and is removed at the end, also when it fails;
//! leftovers of an interrupted bench are removed when the next one starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod events;
mod standalone;

/// Marks what the baseline creates (our own runs carry our usual labels and job ids).
const BENCH_LABEL: &str = "io.perstack.sandbox.bench";
const JOB_LABEL: &str = "io.perstack.sandbox.job-id";
const JOB_PREFIX: &str = "bench-";

type Result<T> = std::result::Result<T, String>;

struct Options {
    binary: PathBuf,
    out: PathBuf,
    runs: usize,
    cold_runs: usize,
}

fn options() -> Result<Options> {
    let mut options = Options {
        binary: PathBuf::from("target/x86_64-unknown-linux-gnu/release/perstack-sandbox"),
        out: PathBuf::from("BENCHMARKS.md"),
        runs: 10,
        cold_runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--binary" => options.binary = PathBuf::from(value()?),
            "--out" => options.out = PathBuf::from(value()?),
            "--runs" => options.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--cold-runs" => {
                options.cold_runs = value()?.parse().map_err(|e| format!("--cold-runs: {e}"))?
            }
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.runs == 0 || options.cold_runs == 0 {
        return Err("--runs and --cold-runs must be at least 1".into());
    }
    Ok(options)
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    };
    remove_leftovers();
    let result = {
        let _cleanup = Cleanup;
        bench(&options)
    };
    match result {
        Ok(()) => eprintln!("wrote {}", options.out.display()),
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(1);
        }
    }
}

/// Removes what this or an earlier (interrupted) bench left in Docker when dropped.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_leftovers();
    }
}

fn remove_leftovers() {
    for (list, remove) in [
        (
            &["ps", "-a", "--format", "{{.ID}} {{.Labels}}"][..],
            &["rm", "-f", "-v"][..],
        ),
        (
            &["volume", "ls", "--format", "{{.Name}} {{.Labels}}"][..],
            &["volume", "rm", "-f"][..],
        ),
        (
            &["network", "ls", "--format", "{{.ID}} {{.Labels}}"][..],
            &["network", "rm"][..],
        ),
    ] {
        let listed = docker(list).unwrap_or_default();
        let ours: Vec<&str> = listed
            .lines()
            .filter(|line| {
                line.contains(&format!("{BENCH_LABEL}="))
                    || line.contains(&format!("{JOB_LABEL}={JOB_PREFIX}"))
            })
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        if !ours.is_empty() {
            let _ = docker(&[remove, &ours[..]].concat());
        }
    }
}

/// Runs `docker args`, returns its stdout.
fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), nanos % (1 << 32))
}

/// One `perstack-sandbox run` of an Expert, timed from the outside.
#[derive(Default)]
struct Timed {
    /// Spawn → `initializeRuntime` read.
    first_event: Option<Duration>,
    /// Spawn → first and last `dockerBuildProgress` read.
    images: Option<(Duration, Duration)>,
    /// `completeRun` read → exit.
    teardown: Option<Duration>,
    /// Spawn → exit: the whole run to completion.
    total: Option<Duration>,
    /// `callTools` read → `resolveToolResults` read.
    tool_calls: Option<Duration>,
    /// Image tags by service.
    tags: BTreeMap<String, String>,
    /// Containers running at `initializeRuntime`, as `docker inspect` shows them (when asked).
    inspected: Option<Value>,
}

struct Bench<'a> {
    options: &'a Options,
    config: PathBuf,
    workspace: PathBuf,
    /// The standalone runs' workspace, apart from the multi-container runs' one.
    standalone_workspace: PathBuf,
    nonce: String,
    runs: usize,
}

impl Bench<'_> {
    fn run(&mut self, expert: &str, inspect: bool) -> Result<Timed> {
        self.run_under(expert, inspect, None)
    }

    /// A run with `--runtime-engine runtime` when one is given.
    fn run_under(&mut self, expert: &str, inspect: bool, runtime: Option<&str>) -> Result<Timed> {
        self.runs += 1;
        let job = format!("{JOB_PREFIX}{}-{}", self.nonce, self.runs);
        let started = Instant::now();
        let mut child = Command::new(&self.options.binary)
            .args(["run", "--json", "--config"])
            .arg(&self.config)
            .arg("--workspace")
            .arg(&self.workspace)
            .args(
                runtime
                    .map(|r| vec!["--runtime-engine", r])
                    .unwrap_or_default(),
            )
            .args(["--job-id", &job, expert, standalone::QUERY])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.options.binary.display()))?;
        let mut timed = Timed::default();
        let mut completed_at = None;
        let mut called_at = None;
        events::each(&mut child, started, "the run", |event, now| {
            match event["type"].as_str().unwrap_or_default() {
                "dockerBuildProgress" => {
                    let first = timed.images.map_or(now, |(first, _)| first);
                    timed.images = Some((first, now));
                    let message = event["message"].as_str().unwrap_or_default();
                    if let Some(tag) = message
                        .split_whitespace()
                        .find(|w| w.starts_with("perstack-sandbox/"))
                        && let Some(service) = event["service"].as_str()
                    {
                        timed.tags.insert(service.to_string(), tag.to_string());
                    }
                }
                "initializeRuntime" if timed.first_event.is_none() => {
                    timed.first_event = Some(now);
                    if inspect {
                        timed.inspected = Some(inspect_job(&job)?);
                    }
                }
                "callTools" => called_at = Some(now),
                "resolveToolResults" => {
                    if let Some(called) = called_at.take() {
                        timed.tool_calls = Some(now - called);
                    }
                }
                "completeRun" => completed_at = Some(Instant::now()),
                _ => {}
            }
            Ok(())
        })?;
        let status = child
            .wait()
            .map_err(|e| format!("waiting for the run: {e}"))?;
        timed.teardown = completed_at.map(|at| at.elapsed());
        timed.total = Some(started.elapsed());
        if !status.success() || timed.first_event.is_none() || timed.teardown.is_none() {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
            }
            return Err(format!(
                "the run of `{expert}` did not complete ({status}):\n{stderr}"
            ));
        }
        Ok(timed)
    }
}

/// `docker inspect` of the job's containers, and of the volumes they mount.
fn inspect_job(job: &str) -> Result<Value> {
    let ids = docker(&["ps", "-q", "--filter", &format!("label={JOB_LABEL}={job}")])?;
    let ids: Vec<&str> = ids.lines().collect();
    let containers: Value = serde_json::from_str(&docker(&[&["inspect"][..], &ids[..]].concat())?)
        .map_err(|e| format!("docker inspect: {e}"))?;
    let mut volumes = Vec::new();
    for container in containers.as_array().into_iter().flatten() {
        for mount in container["HostConfig"]["Mounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if mount["Type"] == "volume"
                && let Some(name) = mount["Source"].as_str()
                && !volumes.contains(&name.to_string())
            {
                volumes.push(name.to_string());
            }
        }
    }
    let volumes: Value = if volumes.is_empty() {
        Value::Array(Vec::new())
    } else {
        let names: Vec<&str> = volumes.iter().map(String::as_str).collect();
        serde_json::from_str(&docker(&[&["volume", "inspect"][..], &names[..]].concat())?)
            .map_err(|e| format!("docker volume inspect: {e}"))?
    };
    Ok(serde_json::json!({ "containers": containers, "volumes": volumes }))
}

/// The docker CLI commands that recreate an inspected topology: volume creations, the skill
/// containers (`docker run -d`) and the runtime (`docker run`, attached).
struct Topology {
    volumes: Vec<Vec<String>>,
    skills: Vec<Vec<String>>,
    runtime: Vec<String>,
}

fn topology(inspected: &Value, tag: &str) -> Result<Topology> {
    let rename = |name: &str| format!("{name}-cli{tag}");
    let label = format!("{BENCH_LABEL}={tag}");
    let mut volumes = Vec::new();
    for volume in inspected["volumes"].as_array().into_iter().flatten() {
        let name = volume["Name"].as_str().ok_or("a volume without a name")?;
        let mut cmd: Vec<String> = vec![
            "volume".into(),
            "create".into(),
            "--label".into(),
            label.clone(),
        ];
        if let Some(driver) = volume["Driver"].as_str() {
            cmd.extend(["--driver".into(), driver.into()]);
        }
        for (key, value) in volume["Options"].as_object().into_iter().flatten() {
            cmd.extend([
                "--opt".into(),
                format!("{key}={}", value.as_str().unwrap_or_default()),
            ]);
        }
        cmd.push(rename(name));
        volumes.push(cmd);
    }
    let mut skills = Vec::new();
    let mut runtime = None;
    for container in inspected["containers"].as_array().into_iter().flatten() {
        let config = &container["Config"];
        let host = &container["HostConfig"];
        let role = config["Labels"]["io.perstack.sandbox.role"]
            .as_str()
            .unwrap_or_default();
        let name = container["Name"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/');
        let mut cmd: Vec<String> = vec!["run".into()];
        if role != "runtime" {
            cmd.push("-d".into());
        }
        cmd.extend([
            "--name".into(),
            rename(name),
            "--label".into(),
            label.clone(),
        ]);
        let text = |v: &Value| v.as_str().map(str::to_string);
        if let Some(user) = text(&config["User"]).filter(|u| !u.is_empty()) {
            cmd.extend(["--user".into(), user]);
        }
        for env in config["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
        {
            cmd.extend(["--env".into(), env]);
        }
        if let Some(network) = text(&host["NetworkMode"]) {
            cmd.extend(["--network".into(), network]);
        }
        for cap in host["CapDrop"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
        {
            cmd.extend(["--cap-drop".into(), cap]);
        }
        for cap in host["CapAdd"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
        {
            cmd.extend(["--cap-add".into(), cap]);
        }
        for opt in host["SecurityOpt"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
        {
            cmd.extend(["--security-opt".into(), opt]);
        }
        if host["ReadonlyRootfs"] == true {
            cmd.push("--read-only".into());
        }
        if let Some(memory) = host["Memory"].as_i64().filter(|m| *m > 0) {
            cmd.extend(["--memory".into(), memory.to_string()]);
        }
        if let Some(nanos) = host["NanoCpus"].as_i64().filter(|n| *n > 0) {
            cmd.extend(["--cpus".into(), format!("{}", nanos as f64 / 1e9)]);
        }
        if let Some(pids) = host["PidsLimit"].as_i64().filter(|p| *p > 0) {
            cmd.extend(["--pids-limit".into(), pids.to_string()]);
        }
        for (path, opts) in host["Tmpfs"].as_object().into_iter().flatten() {
            let opts = opts.as_str().unwrap_or_default();
            let spec = if opts.is_empty() {
                path.clone()
            } else {
                format!("{path}:{opts}")
            };
            cmd.extend(["--tmpfs".into(), spec]);
        }
        for mount in host["Mounts"].as_array().into_iter().flatten() {
            let target = mount["Target"].as_str().ok_or("a mount without a target")?;
            let mut spec = match mount["Type"].as_str().unwrap_or_default() {
                "volume" => format!(
                    "type=volume,src={},dst={target}",
                    rename(mount["Source"].as_str().unwrap_or_default())
                ),
                "bind" => format!(
                    "type=bind,src={},dst={target}",
                    mount["Source"].as_str().unwrap_or_default()
                ),
                "tmpfs" => {
                    let mut spec = format!("type=tmpfs,dst={target}");
                    if let Some(size) = mount["TmpfsOptions"]["SizeBytes"].as_i64() {
                        let _ = write!(spec, ",tmpfs-size={size}");
                    }
                    if let Some(mode) = mount["TmpfsOptions"]["Mode"].as_i64() {
                        let _ = write!(spec, ",tmpfs-mode={mode:o}");
                    }
                    spec
                }
                other => return Err(format!("mount type {other} is not replayed")),
            };
            if mount["ReadOnly"] == true {
                spec.push_str(",readonly");
            }
            cmd.extend(["--mount".into(), spec]);
        }
        let entrypoint: Vec<String> = config["Entrypoint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
            .collect();
        if let Some(first) = entrypoint.first() {
            cmd.extend(["--entrypoint".into(), first.clone()]);
        }
        cmd.push(text(&config["Image"]).ok_or("a container without an image")?);
        cmd.extend(entrypoint.into_iter().skip(1));
        cmd.extend(
            config["Cmd"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(text),
        );
        if role == "runtime" {
            runtime = Some(cmd);
        } else {
            skills.push(cmd);
        }
    }
    Ok(Topology {
        volumes,
        skills,
        runtime: runtime.ok_or("no runtime container was running")?,
    })
}

fn spawn_docker(args: &[String], stdout: Stdio) -> Result<Child> {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run docker: {e}"))
}

fn finish(child: Child, what: &str) -> Result<()> {
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for docker: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "docker {what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Starts the topology with the docker CLI; returns the time to the runtime's first output
/// line. `parallel`: every `docker volume create`, then every `docker run`, at once; else one
/// after the other, as a shell script would.
fn baseline(inspected: &Value, tag: &str, parallel: bool) -> Result<Duration> {
    let topology = topology(inspected, tag)?;
    let started = Instant::now();
    if parallel {
        let children: Vec<Child> = topology
            .volumes
            .iter()
            .map(|args| spawn_docker(args, Stdio::null()))
            .collect::<Result<_>>()?;
        for child in children {
            finish(child, "volume create")?;
        }
    } else {
        for args in &topology.volumes {
            finish(spawn_docker(args, Stdio::null())?, "volume create")?;
        }
    }
    let mut skills = Vec::new();
    for args in &topology.skills {
        let child = spawn_docker(args, Stdio::null())?;
        if parallel {
            skills.push(child);
        } else {
            finish(child, "run")?;
        }
    }
    let mut runtime = spawn_docker(&topology.runtime, Stdio::piped())?;
    let stdout = runtime.stdout.take().ok_or("no stdout")?;
    let first = BufReader::new(stdout).lines().next();
    let elapsed = started.elapsed();
    for child in skills {
        finish(child, "run")?;
    }
    let first = match first {
        Some(Ok(line)) => line,
        _ => {
            let out = runtime.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "the CLI-started runtime wrote nothing: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    };
    if !first.contains("\"initializeRuntime\"") {
        return Err(format!("the CLI-started runtime began with {first}"));
    }
    // Its containers and volumes go now, so the next round starts from the same state.
    let _ = runtime.kill();
    let _ = runtime.wait();
    remove_leftovers();
    Ok(elapsed)
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n == 0 {
        Duration::ZERO
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn row(what: &str, values: &[Duration]) -> String {
    let min = values.iter().min().copied().unwrap_or_default();
    let max = values.iter().max().copied().unwrap_or_default();
    format!(
        "| {what} | **{}** | {} | {} | {} |\n",
        ms(median(values)),
        ms(min),
        ms(max),
        values.len()
    )
}

fn need(value: Option<Duration>, what: &str) -> Result<Duration> {
    value.ok_or(format!("no {what} measured"))
}

fn bench(options: &Options) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = std::fs::canonicalize(&options.binary).map_err(|e| {
        format!(
            "{}: {e}; build it first (`make build`)",
            options.binary.display()
        )
    })?;
    let options = &Options {
        binary,
        out: options.out.clone(),
        runs: options.runs,
        cold_runs: options.cold_runs,
    };
    let workspace = std::env::temp_dir().join(format!("perstack-bench-{}", nonce()));
    // With a `.git` of its own the workspace needs no placeholder for it (a protected path the
    // controller makes for the run and removes after it), which the baseline's `docker run`,
    // started after the run, would miss as a mount source.
    std::fs::create_dir_all(workspace.join(".git"))
        .map_err(|e| format!("{}: {e}", workspace.display()))?;
    let standalone_workspace = workspace.with_extension("standalone");
    std::fs::create_dir_all(&standalone_workspace)
        .map_err(|e| format!("{}: {e}", standalone_workspace.display()))?;
    let mut bench = Bench {
        options,
        config: root.join("benches/fixture/perstack.toml"),
        workspace: workspace.clone(),
        standalone_workspace: standalone_workspace.clone(),
        nonce: nonce(),
        runs: 0,
    };
    let result = measure(&mut bench, root);
    let _ = std::fs::remove_dir_all(&workspace);
    let _ = std::fs::remove_dir_all(&standalone_workspace);
    result
}

fn measure(bench: &mut Bench<'_>, root: &Path) -> Result<()> {
    let options = bench.options;
    let load_at_start = load_average();
    eprintln!("building or finding the images…");
    let proxy = bench.run("egress", false)?;
    let prepared = bench.run("bench", true)?;
    let inspected = prepared
        .inspected
        .ok_or("the containers were not inspected")?;
    let tags = prepared.tags;
    let image = standalone::build(
        &options.binary,
        &root.join("benches/fixture"),
        "bench",
        &bench.nonce,
    )?;
    // Unmeasured, as the multi-container run above: the image read once.
    standalone::run(&image, &bench.standalone_workspace, &bench.nonce)?;

    // Ours and the two baselines take turns, so a change in the machine's load hits all three.
    eprintln!(
        "{} rounds of: a warm run, the docker CLI sequential, the docker CLI parallel…",
        options.runs
    );
    let gvisor = gvisor_registered()?;
    if gvisor {
        eprintln!("runsc is registered: each round also runs under gVisor");
    }
    let mut warm = Vec::new();
    let mut teardown = Vec::new();
    let mut tool_calls = Vec::new();
    let mut sequential = Vec::new();
    let mut parallel = Vec::new();
    let mut runsc = UnderRunsc::default();
    let mut multi = standalone::Mode::default();
    let mut one = standalone::Mode::default();
    for round in 0..options.runs {
        let timed = bench.run("bench", false)?;
        warm.push(need(timed.first_event, "first event")?);
        teardown.push(need(timed.teardown, "teardown")?);
        tool_calls.push(need(timed.tool_calls, "tool calls")?);
        multi
            .first_event
            .push(need(timed.first_event, "first event")?);
        multi.total.push(need(timed.total, "run to exit")?);
        let timed = standalone::run(&image, &bench.standalone_workspace, &bench.nonce)?;
        one.first_event.push(timed.first_event);
        one.total.push(timed.total);
        if gvisor {
            let timed = bench.run_under("bench", false, Some("runsc"))?;
            runsc
                .warm
                .push(need(timed.first_event, "first event under runsc")?);
            runsc
                .teardown
                .push(need(timed.teardown, "teardown under runsc")?);
            runsc
                .tool_calls
                .push(need(timed.tool_calls, "tool calls under runsc")?);
        }
        sequential.push(baseline(
            &inspected,
            &format!("{}s{round}", bench.nonce),
            false,
        )?);
        parallel.push(baseline(
            &inspected,
            &format!("{}p{round}", bench.nonce),
            true,
        )?);
    }

    eprintln!("cold runs ({})…", options.cold_runs);
    let mut cold = Vec::new();
    let mut image_phase = Vec::new();
    for _ in 0..options.cold_runs {
        for tag in tags.values() {
            docker(&["rmi", tag])?;
        }
        let timed = bench.run("bench", false)?;
        cold.push(need(timed.first_event, "first event")?);
        let (first, last) = timed.images.ok_or("no image phase")?;
        image_phase.push(last - first);
    }

    let size = |tag: &str| -> Result<f64> {
        let bytes = docker(&["image", "inspect", "--format", "{{.Size}}", tag])?;
        Ok(bytes.trim().parse::<f64>().unwrap_or(0.0) / 1e6)
    };
    let mut sizes = String::new();
    for (service, tag) in tags.iter().chain(
        proxy
            .tags
            .iter()
            .filter(|(s, _)| s.as_str() == "egress-proxy"),
    ) {
        let _ = writeln!(sizes, "| {service} | `{tag}` | {:.1} MB |", size(tag)?);
    }
    for tag in tags.values() {
        multi.image_mb += size(tag)?;
    }
    one.image_mb = size(&image.reference)?;
    let images: Vec<String> = tags.keys().cloned().collect();

    let machine = machine(&options.binary, &load_at_start)?;
    let carried = tags.get("runtime").map_or(Ok(String::new()), |tag| {
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.perstack.sandbox.executable\"}}",
            tag,
        ])
    })?;
    let ratio = |ours: &[Duration], theirs: &[Duration]| {
        median(ours).as_secs_f64() / median(theirs).as_secs_f64()
    };
    let command = format!(
        "make bench   # = cargo bench --bench startup -- --binary {} --runs {} --cold-runs {}",
        options
            .binary
            .strip_prefix(root)
            .unwrap_or(&options.binary)
            .display(),
        options.runs,
        options.cold_runs
    );
    let mut doc = String::new();
    let _ = write!(
        doc,
        "# Benchmarks\n\n\
         Written by `make bench` (`benches/startup/main.rs`); every number below comes from one run of \
         it on the machine described, and is replaced when it runs again.\n\n\
         ```\n{command}\n```\n\n\
         ## Machine\n\n{machine}\n\
         ## What is measured\n\n\
         The Expert `bench` of `benches/fixture/perstack.toml`: the scripted mock provider and two \
         skills, `@perstack/base` and the fixture MCP server — three containers (runtime and two \
         skill containers) and two socket volumes. Times are measured from outside, by the \
         bench process reading the `--json` output as it arrives; medians over the runs.\n\n\
         - **Warm start**: from spawning `perstack-sandbox run` to reading the runtime's first \
         event (`initializeRuntime`), images cached. Includes reading and checking the config, \
         hashing the image contents, the sweep for leftovers of dead controllers, writing the \
         job, creating the volumes and starting every container.\n\
         - **Teardown**: from reading the terminal event (`completeRun`) to the controller's \
         exit: the runtime closes the skills and exits, the controller removes every container \
         and volume of the run and writes the job's final state.\n\
         - **Cold start**: the warm start after removing the Expert's images (runtime, skill, \
         base-skill); **image phase** is its part from the first to the last \
         `dockerBuildProgress` event.\n\
         - **Baseline**: the containers of one of our runs, inspected while it ran, started \
         again with the docker CLI — `docker volume create` for each socket volume, `docker run \
         -d` for each skill, `docker run` for the runtime — with the same images, command, user, \
         environment, mounts, network, capabilities, security options, read-only root, tmpfs and \
         limits; timed to the runtime's first output line (its `initializeRuntime`). \
         *Sequential* runs one command after the other, like a shell script; *parallel* starts \
         the volume commands at once, then every `docker run` at once.\n\n\
         The machine may be shared with other work (its load average at the start and the end \
         is in the table above; with a load above its cores, other processes were waiting for \
         them): absolute times move with it, the ratios less so: each round is one warm run of \
         ours (and one under runsc, below), then the sequential and the parallel baseline, so \
         load changes hit all of them. The minimum and maximum show how much one run moved; \
         compare medians, and only across runs of the bench on a quiet machine for absolute \
         numbers.\n\n\
         ## Results\n\n\
         | measure | median | min | max | runs |\n|---|---|---|---|---|\n"
    );
    doc.push_str(&row("warm start, to `initializeRuntime`", &warm));
    doc.push_str(&row("teardown, `completeRun` to exit", &teardown));
    doc.push_str(&row(
        "tool calls, `callTools` to `resolveToolResults`",
        &tool_calls,
    ));
    doc.push_str(&row("cold start, to `initializeRuntime`", &cold));
    doc.push_str(&row("cold start: image phase", &image_phase));
    doc.push_str(&row("baseline: docker CLI, sequential", &sequential));
    doc.push_str(&row("baseline: docker CLI, parallel", &parallel));
    let _ = write!(
        doc,
        "\n| ratio (medians) | |\n|---|---|\n\
         | warm start / docker CLI sequential | **{:.2}** |\n\
         | warm start / docker CLI parallel | **{:.2}** |\n\n\
         ## Image sizes\n\n| image | tag | size |\n|---|---|---|\n{sizes}\n\
         All four are `FROM scratch` with the one static executable the images carry (and, for \
         the runtime, its spec); sizes are as `docker image inspect` reports them.\n",
        ratio(&warm, &sequential),
        ratio(&warm, &parallel),
    );
    doc.push_str(&executables_section(&options.binary, carried.trim()));
    doc.push_str(&gvisor_section(
        gvisor,
        &[
            ("warm start, to `initializeRuntime`", &warm, &runsc.warm),
            (
                "tool calls, `callTools` to `resolveToolResults`",
                &tool_calls,
                &runsc.tool_calls,
            ),
            (
                "teardown, `completeRun` to exit",
                &teardown,
                &runsc.teardown,
            ),
        ],
    ));
    doc.push_str(&standalone::section(
        &multi,
        &one,
        &format!("{}: {}", tags.len(), images.join(", ")),
        &image.reference,
    ));
    std::fs::write(&options.out, doc).map_err(|e| format!("{}: {e}", options.out.display()))
}

/// The same runs under gVisor (`--runtime-engine runsc`), one per round.
#[derive(Default)]
struct UnderRunsc {
    warm: Vec<Duration>,
    tool_calls: Vec<Duration>,
    teardown: Vec<Duration>,
}

/// Whether the engine has gVisor registered as `runsc`, and how.
fn gvisor_registered() -> Result<bool> {
    let runtimes = docker(&["info", "--format", "{{json .Runtimes}}"])?;
    let runtimes: Value =
        serde_json::from_str(runtimes.trim()).map_err(|e| format!("docker info: {e}"))?;
    Ok(runtimes.get("runsc").is_some())
}

/// runc's medians next to runsc's, measured in the same rounds; or why there are none.
fn gvisor_section(measured: bool, rows: &[(&str, &[Duration], &[Duration])]) -> String {
    let mut doc = String::from("\n## gVisor (runsc) next to runc\n\n");
    if !measured {
        doc.push_str(
            "Not measured: the engine has no `runsc` registered (README, \"gVisor\", says how).\n",
        );
        return doc;
    }
    let registered = docker(&["info", "--format", "{{json .Runtimes.runsc}}"]).unwrap_or_default();
    let _ = write!(
        doc,
        "Each round above also ran the Expert with `--runtime-engine runsc`: every container of \
         the run (runtime, skill, base-skill) under gVisor, registered as `{}`. Medians over \
         the same rounds; the runc column is the warm runs above, each run just before its \
         runsc twin, so both met the same load.\n\n\
         | measure | runc | runsc | runsc − runc | runsc / runc | runsc min–max | runs |\n\
         |---|---|---|---|---|---|---|\n",
        registered.trim()
    );
    for (what, runc, runsc) in rows {
        let (a, b) = (median(runc), median(runsc));
        let min = runsc.iter().min().copied().unwrap_or_default();
        let max = runsc.iter().max().copied().unwrap_or_default();
        let _ = writeln!(
            doc,
            "| {what} | {} | **{}** | {:+.0} ms | {:.2} | {}–{} | {} |",
            ms(a),
            ms(b),
            (b.as_secs_f64() - a.as_secs_f64()) * 1000.0,
            b.as_secs_f64() / a.as_secs_f64(),
            ms(min),
            ms(max),
            runsc.len()
        );
    }
    doc
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` has them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The two release executables beside `binary` and which one the images above carry (their
/// runtime image's `io.perstack.sandbox.executable` label, `carried`).
fn executables_section(binary: &Path, carried: &str) -> String {
    let mb = |path: &Path| {
        std::fs::metadata(path).map_or("missing".to_string(), |m| {
            format!("{:.1} MB", m.len() as f64 / 1e6)
        })
    };
    format!(
        "\n## The two executables\n\n\
         | executable | what | release size |\n|---|---|---|\n\
         | `perstack-sandbox` | the controller: every command and every role, the Kubernetes \
         client with the default features | {} |\n\
         | `perstack-sandbox-roles` | the in-container roles alone, which the images carry | {} |\n\n\
         The images above carry `{carried}` (their `io.perstack.sandbox.executable` label); \
         without a `perstack-sandbox-roles` of the same build beside the controller they carry \
         the controller, and each is about its size.\n",
        mb(binary),
        mb(&binary.with_file_name("perstack-sandbox-roles")),
    )
}

/// CPU, cores, memory, kernel, Docker: the machine the numbers belong to; `load_at_start` is
/// the load average when the measuring began.
fn machine(binary: &Path, load_at_start: &str) -> Result<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, v)| v.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kb: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let kernel = run("uname", &["-sr"]);
    let engine = docker(&[
        "version",
        "--format",
        "{{.Server.Version}} (API {{.Server.APIVersion}})",
    ])?;
    let driver = docker(&["info", "--format", "{{.Driver}}"])?;
    let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let load = load_average();
    let ours = run(&binary.to_string_lossy(), &["--version"]);
    let size = std::fs::metadata(binary).map_or(0, |m| m.len());
    Ok(format!(
        "| | |\n|---|---|\n\
         | date | {date} |\n\
         | CPU | {cpu} |\n\
         | cores | {cores} |\n\
         | RAM | {:.1} GiB |\n\
         | kernel | {kernel} |\n\
         | load average (1, 5, 15 min) at the start | {load_at_start} |\n\
         | load average (1, 5, 15 min) at the end | {load} |\n\
         | Docker | {}, storage driver {} |\n\
         | perstack-sandbox | {ours}, release binary {:.1} MB |\n",
        ram_kb / 1024.0 / 1024.0,
        engine.trim(),
        driver.trim(),
        size as f64 / 1e6
    ))
}
