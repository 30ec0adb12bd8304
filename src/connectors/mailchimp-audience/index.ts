import { httpTarget, resolveSecret } from '../kit/index';
import { defineDestination } from '../kit/module';
import { createMailchimpAudienceDestination } from './destination';
import { MAILCHIMP_TYPE, mailchimpAudienceConfigSchema, mailchimpBaseUrl } from './settings';

/**
 * The `mailchimp-audience` destination module: the members of a Mailchimp audience
 * (destination.ts), its settings (settings.ts) and its emulator (emulator.ts).
 */

export {
  createMailchimpAudienceDestination,
  MAILCHIMP_ENDPOINTS,
  mergeValue,
  subscriberHash,
} from './destination';
export {
  MAILCHIMP_TYPE,
  mailchimpAudienceConfigSchema,
  mailchimpBaseUrl,
  type MailchimpAudienceConfig,
  type MailchimpAudienceConfigInput,
} from './settings';

export const mailchimpAudienceDestination = defineDestination({
  type: MAILCHIMP_TYPE,
  configSchema: mailchimpAudienceConfigSchema,
  create: (config, context) => createMailchimpAudienceDestination(config, context),
  // Without baseUrl or dataCenter, the data centre is the API key's suffix: read the key.
  targets: (config, secrets) => {
    const url =
      config.baseUrl || config.dataCenter
        ? mailchimpBaseUrl(config, '')
        : mailchimpBaseUrl(
            config,
            resolveSecret(secrets, config.apiKeySecret, `${MAILCHIMP_TYPE}: apiKeySecret`),
          );
    return url ? [httpTarget(config.baseUrl ? 'destination.baseUrl' : 'destination.dataCenter', url)] : [];
  },
});
