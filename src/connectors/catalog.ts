import { brazeAttributesDestination } from './braze-attributes';
import { fileDropDestination } from './file-drop';
import { googleCustomerMatchDestination } from './google-customer-match';
import { httpListDestination } from './http-list';
import { hubspotListDestination } from './hubspot-list';
import { klaviyoListDestination } from './klaviyo-list';
import { mailchimpAudienceDestination } from './mailchimp-audience';
import { metaCustomAudienceDestination } from './meta-custom-audience';
import { redisSetDestination } from './redis-set';
import { sqlTableDestination } from './sql-table';

/**
 * Every destination type a connector can use. To add one, write a module with
 * `defineDestination` and list it here (docs/connectors.md walks through it).
 */
export const destinationModules = [
  httpListDestination,
  sqlTableDestination,
  metaCustomAudienceDestination,
  googleCustomerMatchDestination,
  hubspotListDestination,
  mailchimpAudienceDestination,
  klaviyoListDestination,
  brazeAttributesDestination,
  redisSetDestination,
  fileDropDestination,
  // new destinations: one line each, above this comment
] as const;

export type AnyDestinationModule = (typeof destinationModules)[number];
