//! Output formats: text, JSON, JUnit and SARIF.
