// How big is an image in the registry? The sum of its compressed layers, read from its manifest
// (an index resolves to the requested platform, else linux/amd64, else its first entry). No layer is downloaded.
import { type RegistryClient, formatImageRef, parseImageRef } from './registry.ts'

type Descriptor = { digest: string; size: number; platform?: { os?: string; architecture?: string; variant?: string } }
type ManifestJson = { layers?: Descriptor[]; manifests?: Descriptor[] }

export async function compressedImageBytes(client: RegistryClient, ref: string, platform = 'linux/amd64'): Promise<number> {
  return (await imageLayers(client, ref, platform)).reduce((sum, l) => sum + l.size, 0)
}

/** The image's layers (digest and compressed size), from its manifest. */
export async function imageLayers(client: RegistryClient, ref: string, platform = 'linux/amd64'): Promise<Array<{ digest: string; size: number }>> {
  const first = await client.getManifest(ref)
  let manifest = JSON.parse(new TextDecoder().decode(first.bytes)) as ManifestJson
  if (manifest.manifests) {
    const [os, arch, variant] = platform.split('/')
    const pick = manifest.manifests.find((m) => m.platform?.os === os && m.platform?.architecture === arch && (!variant || m.platform?.variant === variant))
      ?? manifest.manifests[0]
    const child = await client.getManifest(formatImageRef({ ...parseImageRef(ref), tag: undefined, digest: pick.digest }))
    manifest = JSON.parse(new TextDecoder().decode(child.bytes)) as ManifestJson
  }
  return (manifest.layers ?? []).map((l) => ({ digest: l.digest, size: l.size }))
}
