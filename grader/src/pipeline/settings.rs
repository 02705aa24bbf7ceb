//! One grading run's settings, from the command line over the configuration file over defaults,
//! and what happens after the checks ran: findings, suppressions, the baseline, every report
//! written, the exit code.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::baseline::{self, Baseline};
use super::config::Config;
use super::suppress::{self, Suppression};
use super::{Sources, findings};
use crate::catalog::CheckDef;
use crate::cli::{
    FailOnArg, Format, FrameworkArg, GroupByArg, OutputArgs, OutputTarget, PipelineArgs, Selection,
};
use crate::inputs::objects::objects;
use crate::model::CheckResult;
use crate::report::text::{Color, GroupBy};
use crate::report::{self, FailOn, Framework, Report};
use crate::{Context, Error, Result, RunOptions};

/// What the checks produced, before findings are triaged.
#[derive(Debug)]
pub struct Graded {
    pub target: String,
    pub mode: String,
    pub results: Vec<CheckResult>,
    /// Input files and documents that were not graded, each with why (static mode).
    pub skipped: Vec<crate::inputs::documents::SkippedInput>,
}

/// Everything a `live` or `static` run was told, resolved.
#[derive(Debug)]
pub struct Settings {
    /// The format printed to standard output, or to the plain `--output FILE`.
    pub format: Format,
    /// `None`: standard output.
    pub main_output: Option<PathBuf>,
    /// Further `FORMAT=FILE` reports.
    pub outputs: Vec<(Format, PathBuf)>,
    pub fail_on: FailOn,
    pub group_by: GroupBy,
    pub framework: Option<Framework>,
    pub labs: Vec<String>,
    pub checks: Vec<String>,
    /// Static mode's inputs.
    pub paths: Vec<PathBuf>,
    /// Flag and configuration-file suppressions (annotations come from the objects).
    pub suppressions: Vec<Suppression>,
    pub baseline: Option<PathBuf>,
    pub create_baseline: Option<PathBuf>,
    /// The configuration file read, if any (for messages).
    pub config: Option<PathBuf>,
}

impl Settings {
    /// Flags over the configuration file over defaults. Every suppression is validated here, so a
    /// typo in a check ID stops the run (exit 2) before anything is graded.
    pub fn resolve(
        output: &OutputArgs,
        pipeline: &PipelineArgs,
        selection: &Selection,
        paths: &[PathBuf],
    ) -> Result<Self> {
        let config = if pipeline.no_config {
            None
        } else if let Some(file) = &pipeline.config {
            Some(Config::read(file)?)
        } else {
            let cwd = std::env::current_dir().map_err(|source| Error::Io {
                path: PathBuf::from("."),
                source,
            })?;
            Config::discover(&cwd)?
        };
        let file_settings = config.as_ref().map(|config| &config.settings);
        let named = |field: &str| match &config {
            Some(config) => format!("{}: {field}", config.file.display()),
            None => field.to_owned(),
        };

        let format = match (
            output.format,
            file_settings.and_then(|s| s.format.as_deref()),
        ) {
            (Some(format), _) => format,
            (None, Some(text)) => parse_enum::<Format>(text, &named("format"))?,
            (None, None) => Format::Text,
        };
        if format == Format::Markdown {
            return Err(Error::Usage(
                "markdown is for `checks`; reports are text, json, junit, sarif, github or gitlab"
                    .into(),
            ));
        }
        let targets: Vec<OutputTarget> = if output.output.is_empty() {
            match &config {
                Some(config) => config
                    .settings
                    .output
                    .iter()
                    .map(|spec| {
                        let target = crate::cli::parse_output(spec).map_err(|message| {
                            Error::Usage(format!("{}: {message}", named("output")))
                        })?;
                        Ok(OutputTarget {
                            format: target.format,
                            path: config.resolve(&target.path),
                        })
                    })
                    .collect::<Result<_>>()?,
                None => Vec::new(),
            }
        } else {
            output.output.clone()
        };
        let mut main_output = None;
        let mut outputs = Vec::new();
        for target in targets {
            match target.format {
                Some(Format::Markdown) => {
                    return Err(Error::Usage(
                        "markdown is for `checks`, not an --output".into(),
                    ));
                }
                Some(format) => outputs.push((format, target.path)),
                None if main_output.is_none() => main_output = Some(target.path),
                None => {
                    return Err(Error::Usage(format!(
                        "--output {}: only one plain --output FILE (the others are FORMAT=FILE)",
                        target.path.display()
                    )));
                }
            }
        }

        let fail_on = match (
            output.fail_on,
            file_settings.and_then(|s| s.fail_on.as_deref()),
        ) {
            (Some(fail_on), _) => fail_on,
            (None, Some(text)) => parse_enum::<FailOnArg>(text, &named("fail-on"))?,
            (None, None) => FailOnArg::Fail,
        };
        let group_by = match (
            pipeline.group_by,
            file_settings.and_then(|s| s.group_by.as_deref()),
        ) {
            (Some(group_by), _) => group_by,
            (None, Some(text)) => parse_enum::<GroupByArg>(text, &named("group-by"))?,
            (None, None) => GroupByArg::Check,
        };
        let framework = match (
            pipeline.framework,
            file_settings.and_then(|s| s.framework.as_deref()),
        ) {
            (Some(framework), _) => Some(framework),
            (None, Some(text)) => Some(parse_enum::<FrameworkArg>(text, &named("framework"))?),
            (None, None) => None,
        };

        let (labs, checks) = if selection.labs.is_empty() && selection.checks.is_empty() {
            file_settings
                .map(|s| (s.labs.clone(), s.checks.clone()))
                .unwrap_or_default()
        } else {
            (selection.labs.clone(), selection.checks.clone())
        };
        let paths = match &config {
            Some(config) if paths.is_empty() => config
                .settings
                .paths
                .iter()
                .map(|path| config.resolve(path))
                .collect(),
            _ => paths.to_vec(),
        };

        let mut suppressions = Vec::new();
        if let Some(config) = &config {
            suppressions.extend(config.suppressions());
        }
        suppressions.extend(suppress::from_flags(&pipeline.skip_checks));
        suppress::validate(&suppressions)?;

        let baseline = match (&pipeline.baseline, &config) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(config)) => config.settings.baseline.as_ref().map(|p| config.resolve(p)),
            (None, None) => None,
        };

        Ok(Self {
            format,
            main_output,
            outputs,
            fail_on: match fail_on {
                FailOnArg::Warn => FailOn::Warn,
                FailOnArg::Fail => FailOn::Fail,
            },
            group_by: match group_by {
                GroupByArg::Check => GroupBy::Check,
                GroupByArg::File => GroupBy::File,
            },
            framework: framework.map(|framework| match framework {
                FrameworkArg::Cis => Framework::Cis,
                FrameworkArg::Nsa => Framework::Nsa,
            }),
            labs,
            checks,
            paths,
            suppressions,
            baseline,
            create_baseline: pipeline.create_baseline.clone(),
            config: config.map(|config| config.file),
        })
    }

    /// The checks to run: the selection, narrowed to the framework's when one is asked for.
    pub fn select(&self) -> Result<Vec<CheckDef>> {
        let checks = RunOptions {
            labs: self.labs.clone(),
            checks: self.checks.clone(),
        }
        .select()?;
        Ok(match self.framework {
            Some(framework) => framework.select(checks),
            None => checks,
        })
    }

    /// Splits the results into findings and marks the accepted ones: annotations on the objects,
    /// then the configuration file, then `--skip-check`; then the baseline. With
    /// `--create-baseline`, the findings that still count are written to it and accepted.
    pub async fn triage(&self, graded: Graded, ctx: &Context) -> Result<Report> {
        let judged_objects = graded.results.iter().any(|result| {
            result
                .locations
                .iter()
                .any(|location| location.object.is_some())
        });
        // The objects were listed or read once for the checks already; this is the cached list.
        let objects = match judged_objects {
            true => objects(ctx).await.ok(),
            false => None,
        };
        let objects: &[_] = objects.as_deref().map_or(&[], Vec::as_slice);
        // Findings are made once, with field lines; the report takes them as they are.
        let findings = findings(&graded.results, objects, &mut Sources::from_disk());
        let mut report = Report::with_findings(
            graded.target,
            graded.mode,
            graded.results,
            self.fail_on,
            findings,
        );
        report.skipped = graded.skipped;
        report.framework = self.framework;

        let mut suppressions = suppress::from_annotations(objects)?;
        suppress::validate(&suppressions)?;
        suppressions.extend(self.suppressions.iter().cloned());
        suppress::apply(&mut report.findings, &suppressions, suppress::today());
        let checks_run: Vec<&str> = report.results.iter().map(|r| r.check.as_str()).collect();
        for unused in suppress::unused(&report.findings, &self.suppressions, &checks_run) {
            let object = unused.object.as_deref().unwrap_or("any object");
            eprintln!(
                "note: {}: the suppression of {} on {object} matched no finding (fixed? it can go)",
                unused.source, unused.check
            );
        }

        if let Some(path) = &self.baseline {
            let baseline = Baseline::read(path)?;
            report.fixed = baseline.apply(&mut report.findings, &report.results);
            report.baseline = true;
        }
        if let Some(path) = &self.create_baseline {
            let created = baseline::create(&report.findings);
            write_file(path, &created.to_json())?;
            created.apply(&mut report.findings, &report.results);
            report.baseline = true;
            eprintln!(
                "hardlab-grade: wrote {} findings to the baseline {}",
                created.findings.len(),
                path.display()
            );
        }
        Ok(report)
    }

    /// Writes the main report and every `FORMAT=FILE` one; the exit code (0 or 1).
    pub fn write_reports(&self, report: &Report) -> Result<i32> {
        match &self.main_output {
            Some(path) => self.write_to_file(self.format, report, path)?,
            None => {
                let stdout = std::io::stdout().lock();
                let mut out = std::io::BufWriter::new(stdout);
                self.write(self.format, report, true, &mut out)
                    .and_then(|()| out.flush())
                    .map_err(|source| Error::Io {
                        path: PathBuf::from("<stdout>"),
                        source,
                    })?;
            }
        }
        for (format, path) in &self.outputs {
            self.write_to_file(*format, report, path)?;
        }
        Ok(if report.failed() { 1 } else { 0 })
    }

    fn write_to_file(&self, format: Format, report: &Report, path: &Path) -> Result<()> {
        let io_error = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io_error)?;
        let mut out = std::io::BufWriter::new(file);
        self.write(format, report, false, &mut out)
            .and_then(|()| out.flush())
            .map_err(io_error)
    }

    /// One report into `out`; JSON is streamed (it is the largest), the others rendered first.
    fn write(
        &self,
        format: Format,
        report: &Report,
        to_stdout: bool,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        match format {
            Format::Json => report::json::write(report, out),
            other => out.write_all(self.render(other, report, to_stdout).as_bytes()),
        }
    }

    fn render(&self, format: Format, report: &Report, to_stdout: bool) -> String {
        match format {
            Format::Text => report::text::render_grouped(report, color(to_stdout), self.group_by),
            Format::Json => report::json::render(report),
            Format::Junit => report::junit::render(report),
            Format::Sarif => report::sarif::render(report),
            Format::Github => report::github::render(report),
            Format::Gitlab => report::gitlab::render(report),
            // Refused in `resolve`.
            Format::Markdown => String::new(),
        }
    }
}

fn parse_enum<T: ValueEnum>(text: &str, field: &str) -> Result<T> {
    T::from_str(text, true).map_err(|_| {
        let choices: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|value| value.to_possible_value())
            .map(|value| value.get_name().to_owned())
            .collect();
        Error::Usage(format!(
            "{field}: {text:?} is not one of {}",
            choices.join(", ")
        ))
    })
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Color only for a terminal, and never when `NO_COLOR` is set to anything (no-color.org).
fn color(to_stdout: bool) -> Color {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    if to_stdout && !no_color && std::io::stdout().is_terminal() {
        Color::Always
    } else {
        Color::Never
    }
}
