// The tea-shop chat page of glm3_teach.serve (lesson 12). Plain JavaScript, nothing loaded from elsewhere.
//
// One turn: POST /v1/chat/completions with "stream": true and the shop's tools, read the
// server-sent events as they arrive (text deltas go straight into the reply bubble). When the
// reply is a tool call, ask the server to run the tool (POST /v1/tools/call), show the call and
// its result, append both to the history and ask again, at most MAX_TOOL_ROUNDS times.
"use strict";

const MAX_TOOL_ROUNDS = 3;
const history = [];          // the conversation in OpenAI's message format
let model = null;
let shopTools = [];

const $ = (id) => document.getElementById(id);

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function bubble(kind, text, who) {
  const div = document.createElement("div");
  div.className = "msg " + kind;
  if (who) {
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = who;
    div.appendChild(label);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text || "";
  div.appendChild(body);
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return body;
}

function status(text) { $("status").textContent = text; }

async function getJSON(url) {
  const response = await fetch(url, { headers: headers() });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

async function setup() {
  try {
    model = (await getJSON("/v1/models")).data[0].id;
    shopTools = (await getJSON("/v1/tools")).data;
    status("model: " + model);
  } catch (error) {
    status("cannot reach the server: " + error.message + " (an API key may be needed, see Settings)");
  }
}

// Read a text/event-stream body; call onEvent(parsed JSON) for each "data:" line, stop at [DONE].
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

// One streamed completion: returns the assistant message (text or tool calls) and the finish reason.
async function streamReply() {
  const request = { model, messages: history, stream: true, temperature: Number($("temperature").value) };
  if ($("use-tools").checked && shopTools.length) request.tools = shopTools;
  const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(request) });
  if (!response.ok) {
    const data = await response.json();
    throw new Error(data.error ? data.error.message : response.statusText);
  }
  const text = bubble("assistant streaming", "", "客服");
  const message = { role: "assistant", content: "" };
  const calls = [];
  let finish = null;
  await readEvents(response, (chunk) => {
    if (chunk.error) throw new Error(chunk.error.message);
    for (const choice of chunk.choices) {
      const delta = choice.delta || {};
      if (delta.content) { message.content += delta.content; text.textContent = message.content; }
      for (const part of delta.tool_calls || []) {
        if (!calls[part.index]) calls[part.index] = { id: part.id, type: "function", function: { name: part.function.name, arguments: "" } };
        calls[part.index].function.arguments += part.function.arguments || "";
        text.textContent = "调用工具 " + calls.map((c) => c.function.name + " " + c.function.arguments).join(", ");
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    $("log").scrollTop = $("log").scrollHeight;
  });
  text.parentElement.classList.remove("streaming");
  if (calls.length) { message.content = null; message.tool_calls = calls; text.parentElement.remove(); }
  return { message, finish };
}

async function runTool(call) {
  const response = await fetch("/v1/tools/call", {
    method: "POST", headers: headers(),
    body: JSON.stringify({ name: call.function.name, arguments: call.function.arguments }),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data.content;
}

async function ask(question) {
  if (!model) await setup();
  if (!model) throw new Error("the server did not answer /v1/models (is an API key needed? see Settings)");
  history.push({ role: "user", content: question });
  bubble("user", question, "我");
  for (let round = 0; round <= MAX_TOOL_ROUNDS; round++) {
    status("thinking…");
    const { message, finish } = await streamReply();
    history.push(message);
    if (finish !== "tool_calls" || round === MAX_TOOL_ROUNDS) { status("finish_reason: " + finish); return; }
    for (const call of message.tool_calls) {
      const shown = bubble("tool", "调用工具 " + call.function.name + "(" + call.function.arguments + ")", "工具 tool");
      const result = await runTool(call);
      shown.textContent += "\n结果 " + result;
      history.push({ role: "tool", tool_call_id: call.id, content: result });
    }
  }
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("question").value = "";
  $("send").disabled = true;
  try {
    await ask(question);
  } catch (error) {
    bubble("error", "出错了: " + error.message);
    status("error");
  } finally {
    $("send").disabled = false;
    $("question").focus();
  }
});

$("api-key").addEventListener("change", setup);
$("clear").addEventListener("click", () => { history.length = 0; $("log").textContent = ""; status("new conversation"); });

setup();
