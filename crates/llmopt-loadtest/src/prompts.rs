//! The prompts a load test sends: MT-Bench's question file (the first turn of each question), any
//! JSON-lines file with a `prompt` or `turns` field, or plain text with one prompt per line.

use std::path::Path;

use crate::LoadError;

/// Reads prompts from `path`: a `.jsonl` file whose lines are objects with `turns` (a list of
/// strings; the first is taken, as MT-Bench's `question.jsonl`) or `prompt` (a string); any other
/// file is UTF-8 text with one prompt per non-empty line.
pub fn read_prompts(path: &Path) -> Result<Vec<String>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Prompts {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let jsonl = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let prompts = if jsonl { parse_jsonl(&text) } else { Ok(parse_lines(&text)) };
    let prompts = prompts
        .map_err(|reason| LoadError::Prompts { path: path.display().to_string(), reason })?;
    if prompts.is_empty() {
        return Err(LoadError::Prompts {
            path: path.display().to_string(),
            reason: "it holds no prompt".into(),
        });
    }
    Ok(prompts)
}

/// One prompt per non-empty line, trimmed.
pub fn parse_lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// One prompt per JSON object line (`turns[0]` or `prompt`); blank lines are skipped; the error
/// names the line.
pub fn parse_jsonl(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let prompt = v
            .get("turns")
            .and_then(|t| t.get(0))
            .or_else(|| v.get("prompt"))
            .and_then(|p| p.as_str())
            .ok_or_else(|| format!("line {}: no string in `turns[0]` or `prompt`", i + 1))?;
        out.push(prompt.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_takes_the_first_turn_or_the_prompt() {
        let text = "{\"question_id\":1,\"turns\":[\"first\",\"second\"]}\n\n{\"prompt\":\"p\"}\n";
        assert_eq!(parse_jsonl(text).unwrap(), vec!["first", "p"]);
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let err = parse_jsonl("{\"prompt\":\"a\"}\n{\"turns\":[]}\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = parse_jsonl("{\"prompt\":\"a\"}\nnot json\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn text_is_one_prompt_per_line() {
        assert_eq!(parse_lines("  a \n\n b\n"), vec!["a", "b"]);
    }

    #[test]
    fn mt_bench_questions_load() {
        let prompts = read_prompts(&llmopt_testdata::mt_bench()).unwrap();
        assert_eq!(prompts.len(), 80);
        assert!(prompts[0].starts_with("Compose an engaging travel blog post"), "{}", prompts[0]);
    }

    #[test]
    fn an_empty_file_is_an_error() {
        let dir = llmopt_testdata::TempDir::new("loadtest-prompts");
        let path = dir.path().join("empty.txt");
        std::fs::write(&path, "\n \n").unwrap();
        let err = read_prompts(&path).unwrap_err().to_string();
        assert!(err.contains("no prompt"), "{err}");
    }
}
