// Compiled by tests/test_clients.py against api.d.ts, which openapi-typescript makes from the served
// document. Each @ts-expect-error line must NOT type-check: tsc fails if one of them does.
import type { components, paths } from "./api";

type Schemas = components["schemas"];
type JobBody = NonNullable<paths["/v1/jobs"]["post"]["requestBody"]>["content"]["application/json"];

export const ingest: Schemas["IngestPayload"] = { project_id: "p", source_asset_id: "asset_1" };
export const body: JobBody = ingest;
export const exportBody: JobBody = { project_id: "p", source_asset_id: "asset_1", presets: ["hls", "mp4-720p"] };

// @ts-expect-error a misspelt key is not an ingest payload (issue 21: {"projct_id": 42} compiled)
export const typo: Schemas["IngestPayload"] = { projct_id: 42 };
// @ts-expect-error presets are names or preset objects
export const badPresets: Schemas["ExportPayload"] = { project_id: "p", presets: [42] };

export function videoUrl(outputs: Schemas["RenderOutputs"]): string {
  return outputs.video.url;
}
export function hlsUrls(outputs: Schemas["ExportOutputs"]): string[] {
  return Object.values(outputs.hls_files).flat().map((asset) => asset.url);
}
export function clipIds(outputs: Schemas["GenerateClipOutputs"]): string[] {
  return outputs.clips.map((clip) => clip.clip_version_id);
}
export function progress(job: Schemas["JobRecord"]): number {
  return job.result_payload ? job.result_payload.progress : 0;
}

type Download = paths["/v1/assets/{asset_id}/content"]["get"]["responses"][200]["content"]["application/octet-stream"];
// @ts-expect-error a download is bytes, never a JSON object
export const notJson: Download = { id: "asset_1" };

export const signAsset: Schemas["SignedUrlRequest"] = { asset_id: "asset_1", expires_in: 600 };
// @ts-expect-error the signed-url body takes asset_id or job_id
export const badSign: Schemas["SignedUrlRequest"] = { asset: "asset_1" };
export function playable(signed: Schemas["SignedUrl"]): string | undefined {
  return signed.url;
}
