//! What a run found, written three ways under the output folder: `bench.md` (the table),
//! `bench.json` (every figure) and `bench.png` (a bar per phase against the hello ceiling).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use crate::load::Outcome;
use crate::phases::Workload;

/// How the run was paced.
#[derive(Serialize)]
pub struct Settings {
    /// Whether this was a smoke run (short phases: the figures mean little).
    pub smoke: bool,
    /// Seconds per phase.
    pub duration_s: u64,
    /// Connections per phase, unless the phase says otherwise.
    pub connections: usize,
    /// Cores of the machine.
    pub cores: usize,
}

/// Traffic of one kind in a phase, as measured.
#[derive(Serialize)]
pub struct Traffic {
    /// Connections.
    pub connections: usize,
    /// Successful (2xx) answers per second.
    pub ok_per_sec: f64,
    /// Median latency of every answer, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Answers with a status the phase does not expect.
    pub unexpected: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection failures, timeouts).
    pub errors: u64,
}

impl Traffic {
    /// Summarises `outcome` of workload `w`.
    pub fn from_outcome(w: &Workload, outcome: &Outcome) -> Self {
        Self {
            connections: w.connections,
            ok_per_sec: outcome.ok_per_sec(),
            p50_ms: outcome.latency_ms(0.5),
            p99_ms: outcome.latency_ms(0.99),
            statuses: outcome.statuses.clone(),
            unexpected: outcome.unexpected(w.expected),
            errors: outcome.errors,
        }
    }

    fn clean(&self) -> bool {
        self.unexpected.is_empty() && self.errors == 0 && self.ok_per_sec > 0.0
    }
}

/// One phase's figures.
#[derive(Serialize)]
pub struct PhaseResult {
    /// The phase.
    pub name: String,
    /// What it measures.
    pub what: String,
    /// Valid: it ran, and every answer was one it expected. An invalid phase's figures are
    /// not results.
    pub valid: bool,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
    /// Successful answers per second of the measured traffic.
    pub ok_per_sec: f64,
    /// `ok_per_sec` as a share of the hello phase of the same run.
    pub share_of_hello: Option<f64>,
    /// The measured traffic.
    pub measured: Option<Traffic>,
    /// Traffic that ran beside it (the login flood).
    pub beside: Option<Traffic>,
    /// Tessera's resident memory right after the phase, MiB.
    pub rss_mib: Option<f64>,
    /// The machine's load average (1, 5, 15 min) right after the phase.
    pub load_avg: [f64; 3],
}

impl PhaseResult {
    /// A phase that ran.
    pub fn measured(name: &str, what: &str, measured: Traffic, beside: Option<Traffic>) -> Self {
        let valid = measured.clean() && beside.as_ref().is_none_or(Traffic::clean);
        Self {
            name: name.to_owned(),
            what: what.to_owned(),
            valid,
            error: None,
            ok_per_sec: measured.ok_per_sec,
            share_of_hello: None,
            measured: Some(measured),
            beside,
            rss_mib: None,
            load_avg: [0.0; 3],
        }
    }

    /// A phase that could not run.
    pub fn failed(name: &str, what: &str, error: String) -> Self {
        Self {
            name: name.to_owned(),
            what: what.to_owned(),
            valid: false,
            error: Some(error),
            ok_per_sec: 0.0,
            share_of_hello: None,
            measured: None,
            beside: None,
            rss_mib: None,
            load_avg: [0.0; 3],
        }
    }

    /// One line for the progress log.
    pub fn line(&self) -> String {
        match (&self.error, &self.measured) {
            (Some(e), _) => format!("{:<22} FAILED: {e}", self.name),
            (None, Some(m)) => format!(
                "{:<22} {:>10.0} req/s  p50 {:.2} ms  p99 {:.2} ms  statuses {:?}{}{}",
                self.name,
                self.ok_per_sec,
                m.p50_ms,
                m.p99_ms,
                m.statuses,
                if m.errors > 0 {
                    format!("  errors {}", m.errors)
                } else {
                    String::new()
                },
                if self.valid { "" } else { "  INVALID" }
            ),
            (None, None) => self.name.clone(),
        }
    }

    fn unexpected_text(&self) -> String {
        let mut parts = Vec::new();
        for traffic in [&self.measured, &self.beside].into_iter().flatten() {
            parts.extend(traffic.unexpected.iter().map(|(s, n)| format!("{n}×{s}")));
            if traffic.errors > 0 {
                parts.push(format!("{} no answer", traffic.errors));
            }
        }
        if parts.is_empty() {
            "0".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Every phase on one database.
#[derive(Serialize)]
pub struct Run {
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Tessera's resident memory once it listens, before any request, MiB.
    pub started_rss_mib: Option<f64>,
    /// Its resident memory once the data was prepared (accounts created, so passwords
    /// hashed), before any phase, MiB.
    pub idle_rss_mib: Option<f64>,
    /// Its resident memory after resting once the phases were over (not in smoke runs), MiB:
    /// what a login flood leaves behind.
    pub rested_rss_mib: Option<(u64, f64)>,
    /// Why the run stopped before its phases, if it did.
    pub error: Option<String>,
    /// The scale phase, when it ran and finished.
    pub scale: Option<crate::scale::Scale>,
    /// Why the scale phase failed, if it did.
    pub scale_error: Option<String>,
    /// The phases, in order.
    pub phases: Vec<PhaseResult>,
    /// Derived figures worth a line of their own.
    pub notes: Vec<String>,
}

impl Run {
    /// A run about to start.
    pub fn new(database: &str) -> Self {
        Self {
            database: database.to_owned(),
            started_rss_mib: None,
            idle_rss_mib: None,
            rested_rss_mib: None,
            error: None,
            scale: None,
            scale_error: None,
            phases: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A run that could not start.
    pub fn failed(database: &str, error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::new(database)
        }
    }

    /// Adds the figures read across phases: logins against the cores' hashing ceiling, `/me`
    /// p99 beside the login flood against idle, and what the flood itself got.
    pub fn derive_notes(&mut self, cores: usize) {
        let one = self
            .phase("one login at a time")
            .and_then(|p| p.measured.as_ref());
        let many = self.phase("login");
        if let (Some(one), Some(many)) = (one, many)
            && one.ok_per_sec > 0.0
        {
            let hash_ms = 1000.0 / one.ok_per_sec;
            let ceiling = cores as f64 * one.ok_per_sec;
            self.notes.push(format!(
                "login: {:.0}/s = {:.0}% of cores ÷ one login time ({cores} ÷ {hash_ms:.1} ms = {ceiling:.0}/s)",
                many.ok_per_sec,
                100.0 * many.ok_per_sec / ceiling
            ));
        }
        let idle = self.phase("me bearer").and_then(|p| p.measured.as_ref());
        let flood = self.phase("me during login flood");
        let (Some(idle), Some(flood)) = (idle, flood) else {
            return;
        };
        let mut notes = Vec::new();
        if let Some(m) = &flood.measured {
            notes.push(format!(
                "`/me` p99 during the login flood: {:.2} ms, {:.1}× the idle {:.2} ms",
                m.p99_ms,
                m.p99_ms / idle.p99_ms.max(1e-9),
                idle.p99_ms
            ));
        }
        if let Some(b) = &flood.beside {
            notes.push(format!(
                "the flood itself ({} connections): {:.0} logins/s, {} × 503 (hashing queue full)",
                b.connections,
                b.ok_per_sec,
                b.statuses.get(&503).copied().unwrap_or(0)
            ));
        }
        self.notes.extend(notes);
    }

    fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// The whole report.
#[derive(Serialize)]
pub struct Report {
    /// When the run started, Unix seconds.
    pub started_unix: u64,
    /// How it was paced.
    pub settings: Settings,
    /// One run per database.
    pub runs: Vec<Run>,
}

impl Report {
    /// An empty report.
    pub fn new(settings: Settings) -> Self {
        Self {
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            settings,
            runs: Vec::new(),
        }
    }

    /// The runs and phases that failed or are invalid, by name.
    pub fn broken(&self) -> Vec<String> {
        let mut broken = Vec::new();
        for run in &self.runs {
            if run.error.is_some() {
                broken.push(run.database.clone());
            }
            for phase in run.phases.iter().filter(|p| !p.valid) {
                broken.push(format!("{} {}", run.database, phase.name));
            }
            if run.scale_error.is_some() || run.scale.as_ref().is_some_and(|s| !s.clean()) {
                broken.push(format!("{} scale", run.database));
            }
        }
        broken
    }

    /// The Markdown tables, one per database.
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut out = format!(
            "{} s per phase, {} connections, {} cores{}; req/s counts 2xx answers only\n",
            s.duration_s,
            s.connections,
            s.cores,
            if s.smoke {
                " (smoke run: figures are not results)"
            } else {
                ""
            }
        );
        for run in &self.runs {
            out.push_str(&format!("\n### {}\n\n", run.database));
            if let Some(e) = &run.error {
                out.push_str(&format!("FAILED before its phases: {e}\n"));
                continue;
            }
            if let (Some(started), Some(idle)) = (run.started_rss_mib, run.idle_rss_mib) {
                out.push_str(&format!(
                    "Tessera RSS: {started:.1} MiB once listening, {idle:.1} MiB after the \
                     accounts were created (before the phases)"
                ));
                if let Some((secs, rested)) = run.rested_rss_mib {
                    out.push_str(&format!(", {rested:.1} MiB {secs} s after the last phase"));
                }
                out.push_str("\n\n");
            }
            out.push_str(
                "| phase | conns | req/s | of hello | p50 ms | p99 ms | unexpected | RSS after MiB | load avg | status |\n\
                 |---|---:|---:|---:|---:|---:|---|---:|---|---|\n",
            );
            for p in &run.phases {
                let (conns, p50, p99) = p.measured.as_ref().map_or(
                    ("-".to_owned(), "-".to_owned(), "-".to_owned()),
                    |m| {
                        (
                            m.connections.to_string(),
                            format!("{:.2}", m.p50_ms),
                            format!("{:.2}", m.p99_ms),
                        )
                    },
                );
                out.push_str(&format!(
                    "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} {:.2} {:.2} | {} |\n",
                    p.name,
                    conns,
                    p.ok_per_sec,
                    p.share_of_hello
                        .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                    p50,
                    p99,
                    p.unexpected_text(),
                    p.rss_mib.map_or("-".to_owned(), |r| format!("{r:.1}")),
                    p.load_avg[0],
                    p.load_avg[1],
                    p.load_avg[2],
                    if p.error.is_some() {
                        "FAILED"
                    } else if p.valid {
                        "ok"
                    } else {
                        "INVALID"
                    },
                ));
            }
            for note in &run.notes {
                out.push_str(&format!("\n- {note}"));
            }
            for p in run
                .phases
                .iter()
                .filter_map(|p| Some((p, p.error.as_ref()?)))
            {
                out.push_str(&format!("\n- {} failed: {}", p.0.name, p.1));
            }
            out.push('\n');
            if let Some(scale) = &run.scale {
                out.push('\n');
                out.push_str(&scale.markdown());
            }
            if let Some(e) = &run.scale_error {
                out.push_str(&format!("\nScale phase FAILED: {e}\n"));
            }
        }
        out
    }

    /// Writes `bench.md`, `bench.json` and `bench.png` into `dir`.
    pub fn write(&self, dir: &Path, markdown: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("bench.md"), markdown)?;
        std::fs::write(
            dir.join("bench.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        self.chart(&dir.join("bench.png"))
    }

    /// One panel per database: a bar per phase (req/s, log scale, labelled with the figure and
    /// its share of the ceiling), the hello ceiling as a line, invalid phases in red.
    fn chart(&self, path: &Path) -> anyhow::Result<()> {
        // The one font, embedded: nothing is looked up on the machine.
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        )
        .map_err(|_| anyhow::anyhow!("the embedded font does not load"))?;
        let runs: Vec<&Run> = self.runs.iter().filter(|r| !r.phases.is_empty()).collect();
        let panels = u32::try_from(runs.len().max(1))?;
        let root = BitMapBackend::new(path, (1400, 520 * panels)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        for (run, area) in runs.iter().zip(root.split_evenly((runs.len().max(1), 1))) {
            draw_panel(run, &area, &self.settings).map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
        Ok(())
    }
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart failed: {e:?}")
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_panel(
    run: &Run,
    area: &Area<'_>,
    settings: &Settings,
) -> DrawResult<(), BitMapBackend<'static>> {
    let phases = &run.phases;
    let count = i32::try_from(phases.len()).unwrap_or(i32::MAX);
    // Room above the tallest bar for its label and the legend.
    let top = phases.iter().map(|p| p.ok_per_sec).fold(10.0, f64::max) * 12.0;
    let ceiling = phases
        .iter()
        .find(|p| p.name == "hello")
        .map(|p| p.ok_per_sec);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Tessera on {}: successful requests/s per phase ({} s, {} connections, {} cores{})",
                run.database,
                settings.duration_s,
                settings.connections,
                settings.cores,
                if settings.smoke { ", smoke" } else { "" }
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        // `a..b` segments include `b`: the last phase is `count - 1`.
        .build_cartesian_2d((0..count - 1).into_segmented(), (1.0..top).log_scale())?;
    let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(phases.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => usize::try_from(*i)
                .ok()
                .and_then(|i| names.get(i))
                .map_or(String::new(), |n| (*n).to_owned()),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 15))
        .y_desc("requests/s (log)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;

    let bars = phases.iter().enumerate().map(|(i, p)| {
        let i = i32::try_from(i).unwrap_or(i32::MAX);
        let color = if !p.valid {
            RED.mix(0.8)
        } else if p.name == "hello" {
            RGBColor(120, 120, 120).mix(0.8)
        } else {
            RGBColor(40, 100, 180).mix(0.8)
        };
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 1.0),
                (SegmentValue::Exact(i + 1), p.ok_per_sec.max(1.0)),
            ],
            color.filled(),
        );
        bar.set_margin(0, 0, 14, 14);
        bar
    });
    chart.draw_series(bars)?;

    let label_style =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(phases.iter().enumerate().map(|(i, p)| {
        let i = i32::try_from(i).unwrap_or(i32::MAX);
        let text = if !p.valid {
            "INVALID".to_owned()
        } else {
            match p.share_of_hello {
                Some(share) => format!("{:.0}/s, {:.1}%", p.ok_per_sec, share * 100.0),
                None => format!("{:.0}/s", p.ok_per_sec),
            }
        };
        Text::new(
            text,
            (SegmentValue::CenterOf(i), p.ok_per_sec.max(1.0) * 1.1),
            label_style.clone(),
        )
    }))?;

    if let Some(ceiling) = ceiling.filter(|c| *c > 1.0) {
        chart
            .draw_series(LineSeries::new(
                [
                    (SegmentValue::Exact(0), ceiling),
                    (SegmentValue::Exact(count), ceiling),
                ],
                RED.stroke_width(2),
            ))?
            .label(format!("hello ceiling {ceiling:.0}/s"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{self, Call};

    fn traffic(statuses: &[(u16, u64)], errors: u64, expected: &'static [u16]) -> Traffic {
        let workload = Workload {
            connections: 1,
            scripts: load::repeat(Call::get("/")),
            expected,
        };
        let mut outcome = Outcome::empty();
        outcome.elapsed = std::time::Duration::from_secs(1);
        outcome.statuses = statuses.iter().copied().collect();
        outcome.errors = errors;
        Traffic::from_outcome(&workload, &outcome)
    }

    fn report_of(phases: Vec<PhaseResult>) -> Report {
        let mut run = Run::new("sqlite");
        run.phases = phases;
        let mut report = Report::new(Settings {
            smoke: true,
            duration_s: 1,
            connections: 1,
            cores: 2,
        });
        report.runs.push(run);
        report
    }

    #[test]
    fn a_phase_with_an_unexpected_status_is_invalid_and_fails_the_run() {
        let phase =
            PhaseResult::measured("me", "", traffic(&[(200, 90), (500, 1)], 0, &[200]), None);
        assert!(!phase.valid);
        let report = report_of(vec![phase]);
        assert_eq!(report.broken(), ["sqlite me"]);
        assert!(report.markdown().contains("| 1×500 |"));
        assert!(report.markdown().contains("| INVALID |"));
    }

    #[test]
    fn an_unexpected_status_beside_the_phase_makes_it_invalid_too() {
        let measured = traffic(&[(200, 90)], 0, &[200]);
        let beside = traffic(&[(200, 5), (503, 40), (429, 1)], 0, &[200, 503]);
        let phase = PhaseResult::measured("flood", "", measured, Some(beside));
        assert!(!phase.valid);
    }

    #[test]
    fn requests_without_an_answer_make_a_phase_invalid() {
        let phase = PhaseResult::measured("me", "", traffic(&[(200, 90)], 3, &[200]), None);
        assert!(!phase.valid);
    }

    #[test]
    fn expected_refusals_beside_a_phase_leave_it_valid() {
        let measured = traffic(&[(200, 90)], 0, &[200]);
        let beside = traffic(&[(200, 5), (503, 40)], 0, &[200, 503]);
        let phase = PhaseResult::measured("flood", "", measured, Some(beside));
        assert!(phase.valid);
        assert!(report_of(vec![phase]).broken().is_empty());
    }

    #[test]
    fn the_chart_is_drawn_with_the_embedded_font() {
        let phases = vec![
            PhaseResult::measured("hello", "", traffic(&[(200, 1000)], 0, &[200]), None),
            PhaseResult::measured("me", "", traffic(&[(200, 400), (500, 1)], 0, &[200]), None),
            PhaseResult::failed("login", "", "no server".to_owned()),
        ];
        let dir = tempfile::tempdir().expect("temporary folder");
        let report = report_of(phases);
        report
            .write(dir.path(), &report.markdown())
            .expect("the report is written");
        let png = std::fs::read(dir.path().join("bench.png")).expect("the chart exists");
        assert!(png.starts_with(b"\x89PNG"));
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("bench.json")).expect("the JSON exists"),
        )
        .expect("valid JSON");
        assert_eq!(json["runs"][0]["phases"][1]["valid"], false);
    }
}
