//! What a packaged command line ships beside itself: `--version` naming the database schema,
//! shell completions, and the manual page.

use crate::support::Operator;

/// `sms-notify 0.0.0 (database schema N)`, N being the last migration `migrate` applies.
#[tokio::test(flavor = "multi_thread")]
async fn version_names_the_schema_that_migrate_brings_a_database_to() {
    let operator = Operator::new().await;

    let version = operator.run(&["--version"]).await;
    let migrated = operator.run(&["migrate"]).await;

    version.succeeded();
    migrated.succeeded();
    let version = version.stdout();
    let last_migration = migrated
        .stdout()
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.parse::<u32>().ok())
        .max()
        .expect("migrate names the migrations it ran");
    assert_eq!(
        version.trim(),
        format!(
            "sms-notify {} (database schema {last_migration})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// The bash script, sourced into a real bash, completes subcommands and their flags.
#[tokio::test(flavor = "multi_thread")]
async fn bash_completion_completes_commands_and_flags() {
    let operator = Operator::new().await;
    let script = operator.run(&["completions", "bash"]).await;
    script.succeeded();
    operator.write("sms-notify.bash", &script.stdout());

    let complete = |words: &str| {
        let line = format!(
            "source ./sms-notify.bash; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _sms__notify sms-notify \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[@]}}\""
        );
        let output = std::process::Command::new("bash")
            .args(["--norc", "-c", &line])
            .current_dir(operator.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };

    let commands = complete("sms-notify ve");
    assert_eq!(commands.split_whitespace().collect::<Vec<_>>(), ["verify"]);
    let subcommands = complete("sms-notify verify c");
    assert_eq!(
        subcommands.split_whitespace().collect::<Vec<_>>(),
        ["check", "cancel"]
    );
    let flags = complete("sms-notify send --te");
    assert!(
        flags.split_whitespace().any(|flag| flag == "--template"),
        "{flags}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zsh_and_fish_completions_name_every_command() {
    let operator = Operator::new().await;
    for (shell, opening, command_form) in [
        ("zsh", "#compdef sms-notify", "'verify:"),
        (
            "fish",
            "# Print an optspec",
            "complete -c sms-notify -n \"__fish_sms_notify_needs_command\" -f -a \"verify\"",
        ),
    ] {
        let run = operator.run(&["completions", shell]).await;
        run.succeeded();
        let script = run.stdout();
        assert!(script.starts_with(opening), "{shell}:\n{script}");
        assert!(script.contains(command_form), "{shell}:\n{script}");
        for command in ["check", "migrate", "send", "report", "completions", "man"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let refused = operator.run(&["completions", "tcsh"]).await;
    refused.exited_with(2);
}

/// The page renders with the system's own man, and names the schema like --version.
#[tokio::test(flavor = "multi_thread")]
async fn man_prints_a_page_man_can_render_and_writes_one_per_command() {
    let operator = Operator::new().await;

    let page = operator.run(&["man"]).await;

    page.succeeded();
    let roff = page.stdout();
    assert!(roff.contains(".TH sms-notify 1"), "{roff}");
    assert!(roff.contains("database schema"), "{roff}");
    operator.write("sms-notify.1", &roff);
    let rendered = std::process::Command::new("man")
        .args(["-l", "-P", "cat", "sms-notify.1"])
        .env("MANWIDTH", "100")
        .current_dir(operator.dir.path())
        .output();
    // `man` is an optional part of a machine; the roff above is checked either way.
    if let Some(rendered) = rendered.ok().filter(|output| output.status.success()) {
        // Justified: the words are what counts, not the spaces between them.
        let text = String::from_utf8_lossy(&rendered.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            text.contains("NAME sms-notify - Operator tool for sms-notify"),
            "{text}"
        );
        assert!(text.contains("sms-notify-completions(1)"), "{text}");
    }

    let pages = operator.dir.path().join("man");
    std::fs::create_dir(&pages).unwrap();
    operator.run(&["man", "--out-dir", "man"]).await.succeeded();
    for name in [
        "sms-notify.1",
        "sms-notify-send.1",
        "sms-notify-verify-check.1",
    ] {
        assert!(pages.join(name).is_file(), "no {name}");
    }
    operator
        .run(&["man", "--out-dir", "nowhere"])
        .await
        .exited_with(2);
}
