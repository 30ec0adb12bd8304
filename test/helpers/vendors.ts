/**
 * The destinations with a vendor behind them, each with its spec's folder under
 * test/vendor-specs/: their emulators hold traffic to the spec, and each has a sandbox harness.
 */
export const VENDOR_SPEC_FOLDERS: Record<string, string> = {
  'braze-attributes': 'braze',
  'google-customer-match': 'google-ads',
  'hubspot-list': 'hubspot',
  'klaviyo-list': 'klaviyo',
  'mailchimp-audience': 'mailchimp',
  'meta-custom-audience': 'meta',
};

export const VENDOR_TYPES = Object.keys(VENDOR_SPEC_FOLDERS);
