// The one way tests make an AWS service error: what an SDK v3 client throws for an error answer
// (the error code as the name, a client fault, the HTTP status in $metadata).
export const serviceError = (name: string, message = name, status = 400): Error =>
  Object.assign(new Error(message), { name, $fault: 'client', $metadata: { httpStatusCode: status } })
