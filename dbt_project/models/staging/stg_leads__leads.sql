with

source as (

    select * from {{ source('raw', 'leads') }}

),

renamed as (

    select
        cast(lead_id as bigint) as lead_id,
        cast(created_at as timestamp) as created_at,
        lower(trim(country)) as country,
        lower(trim(source_channel)) as source_channel,
        trim(company_size) as company_size,
        lower(trim(industry)) as industry,
        cast(annual_revenue_k as {{ mlsm.type_double() }}) as annual_revenue_k,
        cast(visits as integer) as visits,
        cast(pages_viewed as integer) as pages_viewed,
        cast(quotes_requested as integer) as quotes_requested,
        cast(email_opens as integer) as email_opens,
        cast(session_minutes as {{ mlsm.type_double() }}) as session_minutes,
        cast(days_since_last_visit as integer) as days_since_last_visit,
        cast(converted as integer) as converted

    from source

)

select * from renamed
