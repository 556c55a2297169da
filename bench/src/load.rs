//! Load generation: a closed loop (fixed concurrency, as fast as the gateway answers) for peak
//! throughput, and an open loop (fixed arrival rate) for latency under normal load.
//!
//! Latency in the open loop is measured from when a request was due, not from when it was
//! sent, so a stalled gateway cannot hide its stalls (coordinated omission).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

pub struct Settings {
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// The gateway's own time per request from its `Server-Timing` header (`gateway;dur=`),
    /// p50 and p99 in ms; `None` when the gateway does not send one.
    pub overhead_ms: Option<(f64, f64)>,
}

/// Every n-th response is compared with the reference in full; the others by status.
const CHECK_EVERY: u64 = 32;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

fn body() -> Vec<u8> {
    json!({"query": flowfleet_bench::QUERY, "operationName": "TestQuery"})
        .to_string()
        .into_bytes()
}

/// The `gateway;dur=<ms>` entry of a `Server-Timing` header, in microseconds.
fn own_time_us(response: &reqwest::Response) -> Option<u64> {
    let header = response.headers().get("server-timing")?.to_str().ok()?;
    header.split(',').find_map(|metric| {
        let mut params = metric.trim().split(';');
        if params.next()?.trim() != "gateway" {
            return None;
        }
        params.find_map(|p| {
            let ms: f64 = p.trim().strip_prefix("dur=")?.parse().ok()?;
            Some((ms * 1000.0).round() as u64)
        })
    })
}

/// One request; `Err` when the status is not 200 or, when checked, the body differs.
/// `Ok` carries the gateway's own time when it reports one.
async fn one(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    expected: &Value,
    check: bool,
) -> Result<Option<u64>, String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let own_time = own_time_us(&response);
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    if check {
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if &value != expected {
            return Err(format!(
                "wrong response: {}",
                value.to_string().chars().take(300).collect::<String>()
            ));
        }
    }
    Ok(own_time)
}

/// Polls until the gateway answers the query correctly; gives up when `alive` says the
/// process is gone (its log says why) or after `timeout`.
pub async fn wait_until_correct(
    url: &str,
    expected: &Value,
    timeout: Duration,
    alive: &mut dyn FnMut() -> bool,
) -> anyhow::Result<()> {
    let client = client();
    let body = body();
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if !alive() {
            anyhow::bail!("the gateway process exited ({last})");
        }
        match one(&client, url, &body, expected, true).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(anyhow::anyhow!(last)).context("last attempt")
}

/// The `p`th percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

fn summarize(
    mut latencies_us: Vec<u64>,
    mut own_times_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
) -> Summary {
    latencies_us.sort_unstable();
    own_times_us.sort_unstable();
    let requests = latencies_us.len() as u64 + errors;
    Summary {
        requests,
        errors,
        rps: latencies_us.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies_us, 50.0),
        p95_ms: percentile_ms(&latencies_us, 95.0),
        p99_ms: percentile_ms(&latencies_us, 99.0),
        overhead_ms: (!own_times_us.is_empty()).then(|| {
            (
                percentile_ms(&own_times_us, 50.0),
                percentile_ms(&own_times_us, 99.0),
            )
        }),
    }
}

pub async fn closed_loop(
    url: &str,
    concurrency: usize,
    duration: Duration,
    expected: &Value,
) -> Summary {
    let client = client();
    let body = Arc::new(body());
    let expected = Arc::new(expected.clone());
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, body, expected, url) = (
                client.clone(),
                body.clone(),
                expected.clone(),
                url.to_string(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut own_times = Vec::new();
                let mut errors = 0u64;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    n += 1;
                    match one(
                        &client,
                        &url,
                        &body,
                        &expected,
                        n.is_multiple_of(CHECK_EVERY),
                    )
                    .await
                    {
                        Ok(own_time) => {
                            latencies.push(t0.elapsed().as_micros() as u64);
                            own_times.extend(own_time);
                        }
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("    error: {e}");
                            }
                        }
                    }
                }
                (latencies, own_times, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut own_times = Vec::new();
    let mut errors = 0;
    for worker in workers {
        if let Ok((l, o, e)) = worker.await {
            latencies.extend(l);
            own_times.extend(o);
            errors += e;
        }
    }
    summarize(latencies, own_times, errors, started.elapsed())
}

pub async fn open_loop(url: &str, rate: f64, duration: Duration, expected: &Value) -> Summary {
    let client = client();
    let body = Arc::new(body());
    let expected = Arc::new(expected.clone());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let own_times = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0u64));
    let period = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, body, expected, url) = (
            client.clone(),
            body.clone(),
            expected.clone(),
            url.to_string(),
        );
        let (latencies, own_times, errors) = (latencies.clone(), own_times.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            match one(
                &client,
                &url,
                &body,
                &expected,
                i.is_multiple_of(CHECK_EVERY),
            )
            .await
            {
                Ok(own_time) => {
                    latencies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(due.elapsed().as_micros() as u64);
                    own_times
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(own_time);
                }
                Err(_) => *errors.lock().unwrap_or_else(|p| p.into_inner()) += 1,
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let latencies = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    let own_times = std::mem::take(&mut *own_times.lock().unwrap_or_else(|p| p.into_inner()));
    let errors = *errors.lock().unwrap_or_else(|p| p.into_inner());
    summarize(latencies, own_times, errors, elapsed)
}
