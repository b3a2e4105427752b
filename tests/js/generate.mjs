// Greedy generation with transformers.js from a local model directory (no network).
// usage: node generate.mjs MODEL_DIR MAX_NEW_TOKENS [DTYPE] < prompts.json (a JSON list)
// prints a JSON list, one {prompt_ids, new_ids (without the final eos), text, tokens_per_s,
// last_logits (the prompt's next-token logits from a plain forward pass)}
import fs from "node:fs";
import path from "node:path";
import { env, AutoTokenizer, AutoModelForCausalLM } from "@huggingface/transformers";

const [dir, maxNew, dtype = "fp32"] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(dir)) + "/";
const id = path.basename(path.resolve(dir));

const tokenizer = await AutoTokenizer.from_pretrained(id);
const model = await AutoModelForCausalLM.from_pretrained(id, { dtype, device: "cpu" });
const eos = model.generation_config.eos_token_id;
const results = [];
for (const prompt of JSON.parse(fs.readFileSync(0, "utf8"))) {
  const { input_ids, attention_mask } = tokenizer(prompt, { add_special_tokens: false });
  const n = input_ids.dims[1];
  const t0 = performance.now();
  const out = await model.generate({
    input_ids,
    attention_mask,
    max_new_tokens: Number(maxNew),
    do_sample: false,
  });
  const seconds = (performance.now() - t0) / 1000;
  const { logits } = await model({ input_ids, attention_mask });
  let ids = Array.from(out.tolist()[0].slice(n), Number);
  if (ids.length && ids.at(-1) === eos) ids = ids.slice(0, -1); // genpt stops before eos
  results.push({
    prompt_ids: Array.from(input_ids.tolist()[0], Number),
    new_ids: ids,
    text: tokenizer.decode(ids, { skip_special_tokens: true }),
    tokens_per_s: ids.length / seconds,
    last_logits: Array.from(logits.slice(0, n - 1).data),
  });
}
console.log(JSON.stringify(results));
