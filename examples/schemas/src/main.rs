//! `example-peer serve URL...`: serves the example services (`chart.Chart`
//! and `gateway.Gateway`) with the reference implementations, printing
//! `listening URL` per endpoint, until its standard input closes. The Python
//! and TypeScript tests of generated code start it.

use std::process::ExitCode;

use gatewire::{Builder, Router};
use gatewire_example_schemas::impls::{Gateway, Page};
use gatewire_example_schemas::{chart_service, gateway_service};
use tokio::io::AsyncReadExt;

const USAGE: &str = "usage: example-peer serve URL...";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let urls = match args.split_first() {
        Some((cmd, urls)) if cmd == "serve" && !urls.is_empty() => urls,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (gw, mut drives) = Gateway::new();
    let router = gateway_service::route(chart_service::route(Router::new(), Page::default()), gw);
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let server = match Builder::new()
        .offer(chart_service::descriptor())
        .offer(gateway_service::descriptor())
        .router(router)
        .serve(&urls)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for e in server.local_endpoints() {
        println!("listening {e}");
    }
    tokio::spawn(async move {
        while let Some((dir, speed)) = drives.recv().await {
            println!("drive {} {speed}", dir.variant_name().unwrap_or("?"));
        }
    });
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    server.shutdown().await;
    ExitCode::SUCCESS
}
