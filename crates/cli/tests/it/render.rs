//! `render`: a template shown as it would be sent, with its encoding and segment count, and
//! a missing variable named.

use crate::support::Operator;

#[tokio::test(flavor = "multi_thread")]
async fn render_shows_the_text_its_encoding_and_segments() {
    let operator = Operator::new().await;

    let run = operator
        .run(&[
            "render",
            "shipping",
            "--data",
            "name=Zoë",
            "--data",
            "order=A-1",
        ])
        .await;

    run.succeeded();
    let stdout = run.stdout();
    assert!(
        stdout.contains("Hi Zoë, order A-1 has shipped."),
        "{stdout}"
    );
    assert!(stdout.contains("encoding:   UCS-2"), "{stdout}");
    assert!(stdout.contains("characters: 30"), "{stdout}");
    assert!(stdout.contains("segments:   1"), "{stdout}");
    assert!(stdout.contains("UCS-2 because of `ë`"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn render_names_a_missing_variable() {
    let operator = Operator::new().await;

    let run = operator
        .run(&["render", "shipping", "--data", "name=Ada"])
        .await;

    run.exited_with(2);
    assert!(
        run.stderr()
            .contains("template `shipping` needs the variable `order`"),
        "{}",
        run.stderr()
    );
}
