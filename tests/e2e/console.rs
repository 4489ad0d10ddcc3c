use crate::support::{console_stdin, text, workshop};

#[test]
fn demo_runs_planner_coder_reviewer_and_prints_status_and_costs() {
    let out = workshop().arg("demo").output().expect("run demo");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "demo failed: {}", text(&out.stderr));
    let planner = stdout.find("── planner").expect("planner result printed");
    let coder = stdout.find("── coder").expect("coder result printed");
    let reviewer = stdout.find("── reviewer").expect("reviewer result printed");
    assert!(planner < coder && coder < reviewer, "pipe order: {stdout}");
    assert!(
        stdout.contains("agent    | status  | task"),
        "status table: {stdout}"
    );
    assert!(stdout.contains("Total: $0.0819"), "costs: {stdout}");
}

#[test]
fn script_on_stdin_runs_and_chains_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = console_stdin(
        dir.path(),
        r#"
        agent("a", #{script: [#{text: "first answer"}]});
        agent("b", #{script: [#{text: "b got: {prompt}"}]});
        let name = ask("a", "go").pipe("b", "Review");
        print("returned " + name);
        print(result("b"));
        "#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(stdout.contains("returned b"), "{stdout}");
    assert!(stdout.contains("b got: Review\n\nfirst answer"), "{stdout}");
}

#[test]
fn first_error_stops_the_script_with_a_precise_message_and_nonzero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = console_stdin(
        dir.path(),
        r#"
        ask("nobody", "hello");
        print("not reached");
        "#,
    );
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("not reached"));
    let err = text(&out.stderr);
    assert!(
        err.contains("no agent named nobody; agents() lists them"),
        "{err}"
    );
}

#[test]
fn invalid_options_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = console_stdin(dir.path(), r#"agent("x", #{permission_mode: "yolo"});"#);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("invalid permission_mode \"yolo\""));
    let out = console_stdin(dir.path(), r#"agent("x", #{max_turnz: 3});"#);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown field `max_turnz`"),
        "{}",
        text(&out.stderr)
    );
    let out = console_stdin(dir.path(), r#"agent("9lives");"#);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("agent name \"9lives\" is invalid"));
}

#[test]
fn setup_file_is_loaded_at_start_and_script_file_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".workshop.rhai"),
        r#"profile("coder", "You write code.", #{max_turns: 3}); from_profile("coder", "c1");"#,
    )
    .expect("write setup");
    std::fs::write(
        dir.path().join("run.rhai"),
        r#"ask("c1", "hi"); status(); let i = info("c1"); print("turns=" + i.turns);"#,
    )
    .expect("write script");
    let out = workshop()
        .args(["console", "--script", "run.rhai"])
        .current_dir(dir.path())
        .output()
        .expect("run console --script");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(stdout.contains("Mock response to: hi"), "{stdout}");
    assert!(stdout.contains("max_turns: 3"), "{stdout}");
    assert!(stdout.contains("turns=1"), "{stdout}");
}

#[test]
fn cast_poll_await_and_fan_from_a_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = console_stdin(
        dir.path(),
        r#"
        agent("a"); agent("b");
        let r = cast("a", "one");
        await("a");
        print("poll: " + poll(r));
        fan("same question", ["a", "b"]);
        await_all();
        print("total=" + total_cost());
        "#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        stdout.contains("poll: completed: Mock response to: one"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Sent to a, b. Use await_all() to collect."),
        "{stdout}"
    );
    assert!(stdout.contains("total=0.03"), "{stdout}");
}

#[test]
fn board_commands_work_on_a_data_dir_and_the_console_sees_the_items() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        workshop()
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run workshop")
    };
    let out = run(&[
        "work",
        "add",
        "cache",
        "Implement LRU cache",
        "--type",
        "code",
        "--priority",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&[
        "work",
        "add",
        "review",
        "Review cache",
        "--type",
        "review",
        "--depends-on",
        "cache",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["work", "add", "x", "X", "--depends-on", "nope"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("depends on `nope`, which is not on the board"));
    let out = run(&["board"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[ready] cache - Implement LRU cache [code] p1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[new] review - Review cache [review] deps:[cache]"),
        "{stdout}"
    );
    let out = run(&["board", "--status", "ready", "--json"]);
    let items: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], "cache");
    // A node on the same data dir runs the item with a board worker.
    let out = console_stdin(
        dir.path(),
        r#"
        board_worker("dev", "code", #{script: [#{text: "cached"}]});
        await_work("cache");
        board();
        "#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("cache: done"), "{stdout}");
    assert!(
        stdout.contains("[ready] review - Review cache [review]"),
        "{stdout}"
    );
    let out = run(&["work", "show", "cache"]);
    assert!(
        text(&out.stdout).contains("result: cached"),
        "{}",
        text(&out.stdout)
    );
    // A result over 1 MiB is stored in parts: work_item says so, work_result and
    // `workshop work result` give it all.
    let out = console_stdin(
        dir.path(),
        r#"
        let big = "";
        for i in 0..150000 { big += "0123456789"; }
        board_worker("writer", "docs", #{script: [#{text: big}]});
        work("big", "Write a lot", #{type: "docs"});
        await_work("big");
        work_item("big");
        print("whole: " + work_result("big").len());
        print("small: " + work_result("cache"));
        "#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(
            "big: the result is 1500000 bytes in 23 parts; `result` holds its start only. \
             work_result(\"big\") (or `workshop work result big`) reads it all."
        ),
        "{stdout}"
    );
    assert!(stdout.contains("whole: 1500000"), "{stdout}");
    assert!(stdout.contains("small: cached"), "{stdout}");
    let out = run(&["work", "result", "big"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 1_500_001);
    assert!(text(&out.stdout).starts_with("01234567890123456789"));
    let out = run(&["work", "show", "big"]);
    assert!(
        text(&out.stdout).contains("in 23 parts"),
        "{}",
        text(&out.stdout)
    );
}

/// Runs `script` in a console on a fresh directory (with `files` written in it first) and
/// expects it to stop with `want` on stderr, a non-zero exit, and nothing after the refusal.
fn refused(files: &[(&str, &str)], script: &str, want: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).expect("write file");
    }
    let out = console_stdin(dir.path(), &format!("{script}\nprint(\"not reached\");"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "accepted: {stdout}\n{stderr}");
    assert!(!stdout.contains("not reached"), "{stdout}");
    assert!(stderr.contains(want), "wanted {want:?} in: {stderr}");
    stdout
}

// ---- issue 8, item 7: workflows are checked when defined (and files again when run)

#[test]
fn a_workflow_with_a_misspelt_stage_in_from_is_refused_naming_the_stage() {
    refused(
        &[],
        r#"
        profile("planner", "Plans.", #{});
        profile("coder", "Codes.", #{});
        workflow("feature", [
            #{stage: "plan", agent: "planner", title: "Plan"},
            #{stage: "implement", agent: "coder", title: "Implement", from: "plann"},
        ]);
        "#,
        "workflow feature: stage implement takes input from \"plann\", which is neither a stage \
         of this workflow (plan, implement) nor a readable file",
    );
}

#[test]
fn a_workflow_reading_a_missing_file_is_refused_naming_the_stage_and_the_file() {
    refused(
        &[],
        r#"
        profile("planner", "Plans.", #{});
        workflow("feature", [#{stage: "plan", agent: "planner", title: "Plan", from: "specs/none.md"}]);
        "#,
        "stage plan takes input from \"specs/none.md\", which is neither a stage of this \
         workflow (plan) nor a readable file (No such file or directory",
    );
}

#[test]
fn a_workflow_stage_nobody_could_run_is_refused_naming_the_stage_and_what_to_create() {
    refused(
        &[],
        r#"workflow("feature", [#{stage: "plan", agent: "ghost", title: "Plan", type: "code"}]);"#,
        "workflow feature: stage plan is for \"ghost\", but no agent, profile or board worker is \
         named \"ghost\" and no board worker takes code items, so the stage would never run; \
         create one first, e.g. board_worker(\"ghost\", \"code\", #{}) or profile(\"ghost\", ...)",
    );
}

#[test]
fn a_workflow_stage_with_a_work_type_no_worker_could_have_is_refused() {
    refused(
        &[],
        r#"
        agent("planner");
        workflow("feature", [#{stage: "plan", agent: "planner", title: "Plan", type: "cod"}]);
        "#,
        "workflow feature: stage plan: unknown work type \"cod\"; use code, review, test, docs, \
         deploy, triage, custom or custom:<name>",
    );
}

#[test]
fn a_workflow_stage_is_accepted_when_an_agent_profile_or_worker_can_run_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("spec.md"), "the spec").expect("write spec");
    let out = console_stdin(
        dir.path(),
        r#"
        let stages = [
            #{stage: "plan", agent: "planner", title: "Plan", from: "spec.md"},
            #{stage: "lead", agent: "lead", title: "Lead", from: "plan"},
            #{stage: "named", agent: "dev", title: "By name", type: "review"},
            #{stage: "typed", agent: "anyone", title: "By type", type: "code", from: ["plan", "lead"]},
        ];
        try { workflow("feature", stages); } catch (e) { print("refused first: " + e); }
        agent("lead");
        profile("planner", "Plans.", #{});
        board_worker("dev", "code", #{script: [#{text: "done"}]});
        workflow("feature", stages);
        print("defined");
        "#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("refused first: workflow feature: stage plan is for \"planner\""),
        "{stdout}"
    );
    assert!(stdout.contains("\ndefined"), "{stdout}");
}

#[test]
fn a_workflow_file_removed_after_the_definition_refuses_the_run_and_creates_no_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("spec.md"), "the spec").expect("write spec");
    let out = console_stdin(
        dir.path(),
        r#"
        profile("planner", "Plans.", #{});
        workflow("feature", [#{stage: "plan", agent: "planner", title: "Plan", from: "spec.md"}]);
        "#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_file(dir.path().join("spec.md")).expect("remove spec");
    let out = console_stdin(
        dir.path(),
        r#"
        try { run_workflow("feature"); } catch (e) { print("refused: " + e); }
        board();
        "#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(
            "refused: workflow feature: stage plan takes input from \"spec.md\", which is \
             neither a stage of this workflow (plan) nor a readable file (No such file or directory"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("Error reading"), "{stdout}");
    assert!(stdout.contains("Board is empty."), "{stdout}");
}

// ---- issue 8, item 8: one rule for every number, naming the option or argument

#[test]
fn configure_refuses_a_negative_global_budget_naming_it() {
    refused(
        &[],
        "configure(#{max_cost_usd: -1.0});",
        "max_cost_usd must be a finite number, 0 or more, got -1",
    );
}

#[test]
fn a_zero_timeout_is_refused_naming_the_option() {
    refused(
        &[],
        "configure(#{timeout_ms: 0});",
        "timeout_ms must be a whole number, 1 or more, got 0",
    );
    refused(
        &[],
        r#"agent("a", #{timeout_ms: 0});"#,
        "timeout_ms must be a whole number, 1 or more, got 0",
    );
}

#[test]
fn a_negative_timeout_or_queue_depth_is_refused_naming_the_option() {
    refused(
        &[],
        r#"agent("a", #{timeout_ms: -1});"#,
        "timeout_ms must be a whole number, 1 or more, got -1",
    );
    refused(
        &[],
        r#"agent("a", #{queue_depth: -1});"#,
        "queue_depth must be a whole number from 1 to 4294967295, got -1",
    );
}

#[test]
fn history_with_a_negative_count_is_refused() {
    refused(
        &[],
        r#"agent("a"); ask("a", "hi"); history("a", -3);"#,
        "history(name, last): last must be a whole number, 1 or more, got -3",
    );
}

#[test]
fn await_with_a_negative_timeout_is_refused() {
    refused(
        &[],
        r#"agent("a"); await("a", -5);"#,
        "await(name, timeout_ms): timeout_ms must be a whole number, 0 or more, got -5",
    );
}

#[test]
fn await_all_with_a_negative_timeout_fails_the_script() {
    refused(
        &[],
        r#"agent("a", #{script: [#{delay_ms: 200}]}); cast("a", "hi"); await_all(-1);"#,
        "await_all(timeout_ms): timeout_ms must be a whole number, 0 or more, got -1",
    );
}

#[test]
fn a_board_worker_interval_of_zero_or_below_is_refused_as_every_is() {
    for (v, got) in [("0", "got 0"), ("-5", "got -5")] {
        refused(
            &[],
            &format!(r#"board_worker("w", "code", #{{interval: {v}}});"#),
            &format!("board_worker interval must be a whole number, 10 or more, {got}"),
        );
    }
    refused(
        &[],
        r#"agent("a"); every("a", "tick", 0);"#,
        "every(name, prompt, interval_ms): interval_ms must be a whole number, 10 or more, got 0",
    );
}

#[test]
fn putting_nan_or_infinity_is_refused() {
    refused(
        &[],
        r#"put("n", 0.0/0.0);"#,
        "put(key, value): value holds NaN, which JSON cannot store; use a finite number",
    );
    refused(
        &[],
        r#"put("n", #{list: [1.0, 1.0/0.0]});"#,
        "put(key, value): value.list[1] holds inf, which JSON cannot store",
    );
}

#[test]
fn a_stage_priority_out_of_range_is_refused_naming_the_stage() {
    refused(
        &[],
        r#"agent("p"); workflow("f", [#{stage: "plan", agent: "p", title: "Plan", priority: 300}]);"#,
        "stage plan: priority must be a whole number from 1 to 5, got 300",
    );
}

#[test]
fn env_values_given_to_the_console_stay_in_the_secrets_files_and_out_of_every_output() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = workshop()
        .arg("console")
        .current_dir(dir.path())
        .env("WORKSHOP_LOG", "debug")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn workshop console");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            br#"
            configure(#{env: #{CONFIG_KEY: "sk-secret-xyz"}});
            profile("p", "role", #{env: #{PROFILE_KEY: "sk-secret-xyz"}});
            agent("a", #{env: #{ANTHROPIC_API_KEY: "sk-secret-xyz"}, script: [#{text: "ok"}]});
            ask("a", "hi");
            print(info("a"));
            profiles();
            status();
            print(events());
            "#,
        )
        .expect("write script");
    let out = child.wait_with_output().expect("wait for workshop console");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(!stdout.contains("sk-secret-xyz"), "{stdout}");
    assert!(!stderr.contains("sk-secret-xyz"), "{stderr}");
    // On disk only in the secrets files; the data dir is private.
    let data = dir.path().join(".workshop");
    assert_eq!(
        std::fs::metadata(&data)
            .expect("data dir")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let mut stack = vec![data.clone()];
    let mut holders = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            if bytes.windows(13).any(|w| w == b"sk-secret-xyz") {
                holders.push(path.strip_prefix(&data).expect("under").to_path_buf());
            }
        }
    }
    holders.sort();
    let want: Vec<std::path::PathBuf> = ["agent-a.json", "config.json", "profile-p.json"]
        .iter()
        .map(|f| std::path::Path::new("secrets").join(f))
        .collect();
    assert_eq!(holders, want);
}
