with

leads as (

    select * from {{ ref('stg_leads__leads') }}

),

final as (

    select
        lead_id,
        created_at,
        country,
        source_channel,
        company_size,
        industry,
        annual_revenue_k,
        visits,
        pages_viewed,
        quotes_requested,
        email_opens,
        session_minutes,
        days_since_last_visit,
        -- NULL for leads that never visited: "no visits" is not "zero pages per visit".
        case
            when visits > 0
                then cast(pages_viewed as {{ mlsm.type_double() }}) / visits
        end as pages_per_visit,
        converted

    from leads

)

select * from final
