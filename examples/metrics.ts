// Export the runner's metrics for Prometheus on http://127.0.0.1:9464/metrics
// with OpenTelemetry's SDK and its Prometheus exporter: updates handled,
// failed and timed out, handler durations, waits, in-flight gauges, lag,
// getUpdates calls and failures by kind, stalls.
//
//   deno run -A examples/metrics.ts              # fake Bot API: prints the scrape, then exits
//   BOT_TOKEN=123:abc deno run -A examples/metrics.ts --port=9464   # until Ctrl+C
//
// With Deno's built-in exporter instead (OTLP, no SDK to install), drop the
// provider below and run with OTEL_DENO=true (see "Operating it" in README).

import { parseArgs } from "node:util";
import { Bot, type Context } from "grammy";
import { MeterProvider } from "npm:@opentelemetry/sdk-metrics@^3.1.0";
import { PrometheusExporter } from "npm:@opentelemetry/exporter-prometheus@^0.301.0";
import { run, sequentialize } from "../mod.ts";
import { allHandled, connect } from "./_connect.ts";

const { values } = parseArgs({ options: { port: { type: "string", default: "9464" } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65_535) {
  console.error(
    `Cannot start the example as '--port' must be a port number: current value is ${values.port}`,
  );
  Deno.exit(2);
}

// The exporter serves /metrics itself; each scrape reads the current figures.
const exporter = new PrometheusExporter({ host: "127.0.0.1", port });
const meterProvider = new MeterProvider({ readers: [exporter] });

const connection = await connect(2_000, 50);
const bot = new Bot(connection.token, connection.config);
bot.use(sequentialize((ctx: Context) => ctx.chat?.id));
bot.on("message", async (ctx) => {
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
  if (ctx.msg.text?.endsWith("7")) throw new Error("a handler that fails now and then");
});
bot.catch(() => {}); // failures are counted in grammy_runner_updates_failed_total

// Or register it for every library at once: metrics.setGlobalMeterProvider(meterProvider).
const handle = run(bot, { sink: { concurrency: 100 }, telemetry: { meterProvider } });
console.log(`Metrics on http://127.0.0.1:${port}/metrics`);

await allHandled(connection, handle); // on Telegram: runs until Ctrl+C
const scrape = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
console.log(
  scrape.split("\n").filter((line) => line.startsWith("grammy_runner") && !line.includes("_bucket"))
    .join("\n"),
);
await handle.stop();
await meterProvider.shutdown(); // stops the exporter's server
await connection.close();
