// "Copy as curl" and "Copy as Python (SDK)": the current request as code a user can run.
// API keys never go into the code: curl reads $BOXGUARD_API_KEY, the SDK reads it itself.

export const shellQuote = (text) => `'${text.replace(/'/g, `'\\''`)}'`;

function pythonValue(value) {
  if (value === true) return "True";
  if (value === false) return "False";
  if (value === null) return "None";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  return `{${Object.entries(value)
    .map(([k, v]) => `${JSON.stringify(k)}: ${pythonValue(v)}`)
    .join(", ")}}`;
}

// request: {expression, multiple, think, output, policy}; image: {name, sample} or null.
export function curlSnippet(request, image, origin, keyRequired) {
  const lines = [];
  const name = image ? image.name : "image.png";
  if (image && image.sample) {
    lines.push(`curl -so ${shellQuote(name)} ${shellQuote(`${origin}/${image.sample.url}`)}`);
  }
  const parts = [`curl -s ${shellQuote(`${origin}/ground`)}`];
  if (keyRequired) parts.push(`-H "Authorization: Bearer $BOXGUARD_API_KEY"`);
  parts.push(
    `-F ${shellQuote(`image=@${name}`)}`,
    `-F ${shellQuote(`expression=${request.expression}`)}`,
  );
  if (request.multiple) parts.push("-F multiple=true");
  if (request.think) parts.push("-F think=true");
  if (request.output === "point") parts.push("-F output=point");
  if (request.policy) parts.push(`-F ${shellQuote(`policy=${JSON.stringify(request.policy)}`)}`);
  lines.push(parts.join(" \\\n  "));
  return lines.join("\n");
}

export function pythonSnippet(request, image, origin, keyRequired) {
  const lines = ["from boxguard.clients import Client", ""];
  let source = JSON.stringify(image ? image.name : "image.png");
  if (image && image.sample) {
    lines.unshift("import httpx");
    lines.push(`image = httpx.get(${JSON.stringify(`${origin}/${image.sample.url}`)}).content`);
    source = "image";
  }
  const args = [source, JSON.stringify(request.expression)];
  if (request.multiple) args.push("multiple=True");
  if (request.think) args.push("think=True");
  if (request.policy) args.push(`policy=${pythonValue(request.policy)}`);
  const auth = keyRequired ? "  # api_key= or the BOXGUARD_API_KEY env var" : "";
  lines.push(
    `with Client(${JSON.stringify(origin)}) as client:${auth}`,
    `    result = client.${request.output === "point" ? "point" : "ground"}(${args.join(", ")})`,
    "print(result.status, result.detections, result.reasons)",
  );
  return lines.join("\n");
}
