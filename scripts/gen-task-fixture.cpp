// Independent reference for `llmopt eval tasks`: per-choice log-likelihoods computed by llama.cpp
// (libllama), one request at a time from an empty cache. Built and run by scripts/gen-task-fixture.
//
// Input (stdin): one request per line, `doc_id \t idx \t context \t continuation`, where the texts
// have `\\`, `\t`, `\n` escaped. Output (stdout): `doc_id \t idx \t n_ctx \t n_cont \t sum_logprob`.
// Tokenization as lm-eval-harness: ctx = tokenize(context), whole = tokenize(context+continuation),
// the continuation is whole[len(ctx):] (BOS added when the vocabulary asks for it).
// Environment: FA (llama_flash_attn_type, default auto) and UB (n_ubatch, default 512), to see how
// much llama.cpp's own figures move with its attention path (FA=0/1 moved them by under 0.02 nats).
#include "llama.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

static std::string unescape(const std::string & s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '\\' && i + 1 < s.size()) {
            char c = s[++i];
            out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
        } else {
            out += s[i];
        }
    }
    return out;
}

static std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & text) {
    int n = -llama_tokenize(vocab, text.c_str(), text.size(), nullptr, 0, true, false);
    std::vector<llama_token> toks(n);
    llama_tokenize(vocab, text.c_str(), text.size(), toks.data(), n, true, false);
    return toks;
}

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS < requests.tsv\n", argv[0]);
        return 1;
    }
    llama_backend_init();
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    const llama_vocab * vocab = llama_model_get_vocab(model);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 2048;
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = atoi(argv[2]);
    if (getenv("FA")) cp.flash_attn_type = (llama_flash_attn_type) atoi(getenv("FA"));
    if (getenv("UB")) cp.n_ubatch = atoi(getenv("UB"));
    llama_context * ctx = llama_init_from_model(model, cp);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    llama_batch batch = llama_batch_init(2048, 0, 1);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::vector<std::string> f;
        size_t start = 0;
        for (size_t p; (p = line.find('\t', start)) != std::string::npos; start = p + 1) {
            f.push_back(line.substr(start, p - start));
        }
        f.push_back(line.substr(start));
        const std::string context = unescape(f[2]), cont = unescape(f[3]);
        const auto ctx_toks = tokenize(vocab, context);
        const auto whole = tokenize(vocab, context + cont);
        const int n_ctx = ctx_toks.size(), n = whole.size() - 1;  // the last token is not fed
        llama_memory_clear(llama_get_memory(ctx), true);
        batch.n_tokens = n;
        for (int i = 0; i < n; i++) {
            batch.token[i] = whole[i];
            batch.pos[i] = i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = i >= n_ctx - 1;
        }
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "decode failed at doc %s\n", f[0].c_str());
            return 1;
        }
        double sum = 0.0;
        for (int i = n_ctx - 1; i < n; i++) {
            const float * l = llama_get_logits_ith(ctx, i);
            float mx = -INFINITY;
            for (int v = 0; v < n_vocab; v++) mx = std::max(mx, l[v]);
            double z = 0.0;
            for (int v = 0; v < n_vocab; v++) z += std::exp((double) (l[v] - mx));
            sum += (double) (l[whole[i + 1]] - mx) - std::log(z);
        }
        printf("%s\t%s\t%d\t%d\t%.6f\n", f[0].c_str(), f[1].c_str(), n_ctx, n + 1 - n_ctx, sum);
        fflush(stdout);
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
